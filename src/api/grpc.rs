//! The public gRPC service (`raftsentinel.v1.Coordinator`). Writes reply after the entry is
//! applied; errors map to gRPC codes in one place ([`status_of`]).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::{info_span, Instrument};

use super::flags;
use super::watch as changes;
use crate::consensus::{ProposeError, RaftHandle, Role};
use crate::failover::{self, FailoverError};
use crate::fsm::{ClusterState, Command, FailoverReason, MasterSpec, MasterState, RejectKind};
use crate::model::Addr;
use crate::pb::api as pb;
use crate::pb::api::coordinator_server::Coordinator;
use crate::view::{InstanceInfo, MonitorView};

/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_HEADER: &str = "x-leader-id";
/// Metadata key carrying the leader's gRPC address on `UNAVAILABLE`.
pub const LEADER_ADDR_HEADER: &str = "x-leader-grpc";

const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long Failover/Switchover wait for the leader to start the failover.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Changes buffered per watch stream before the sender waits for the client.
const WATCH_BUFFER: usize = 64;

/// The `Coordinator` service of one node.
#[derive(Clone)]
pub struct CoordinatorService {
    raft: RaftHandle,
    monitor: watch::Receiver<Arc<MonitorView>>,
}

impl CoordinatorService {
    /// A service answering for `raft`, with this node's view of the Redis instances.
    pub fn new(raft: RaftHandle, monitor: watch::Receiver<Arc<MonitorView>>) -> Self {
        CoordinatorService { raft, monitor }
    }

    fn status_of(&self, e: ProposeError) -> Status {
        status_of(e, &self.raft.state())
    }
}

/// Maps a consensus or state-machine error to a gRPC status, with a leader hint where useful.
pub fn status_of(e: ProposeError, state: &ClusterState) -> Status {
    match e {
        ProposeError::Rejected(r) => match r.kind {
            RejectKind::NotFound => Status::not_found(r.message),
            RejectKind::Invalid => Status::invalid_argument(r.message),
            RejectKind::Precondition => Status::failed_precondition(r.message),
        },
        ProposeError::NotLeader { leader } => {
            let mut st = Status::unavailable(ProposeError::NotLeader { leader }.to_string());
            if let Some(l) = leader {
                let md = st.metadata_mut();
                md.insert(LEADER_ID_HEADER, MetadataValue::from(l));
                if let Some(addr) = state
                    .members
                    .get(&l)
                    .and_then(|m| m.info.grpc_addr.as_deref())
                    .and_then(|a| a.parse::<MetadataValue<_>>().ok())
                {
                    md.insert(LEADER_ADDR_HEADER, addr);
                }
            }
            st
        }
        ProposeError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        ProposeError::Invalid(_) => Status::invalid_argument(e.to_string()),
        ProposeError::Precondition(_) => Status::failed_precondition(e.to_string()),
        ProposeError::Shutdown | ProposeError::LeaderChanged | ProposeError::MembershipBusy => {
            Status::unavailable(e.to_string())
        }
    }
}

fn master_addr(m: &MasterState) -> pb::MasterAddr {
    pb::MasterAddr {
        name: m.name.clone(),
        host: m.addr.host.clone(),
        port: m.addr.port.into(),
        config_epoch: m.config_epoch,
        quorum: m.quorum,
        odown: m.is_odown(),
        paused: m.paused,
        failover_in_progress: m.failover.is_some() || m.reconf.is_some(),
        num_replicas: m.replicas.len() as u32,
    }
}

fn failover_status(e: FailoverError, state: &ClusterState) -> Status {
    match e {
        FailoverError::NoSuchMaster => Status::not_found(e.to_string()),
        FailoverError::InProgress
        | FailoverError::NoGoodSlave { .. }
        | FailoverError::Aborted(_) => {
            let detail = match &e {
                FailoverError::NoGoodSlave { reason } => format!("{e}: {reason}"),
                _ => e.to_string(),
            };
            Status::failed_precondition(detail)
        }
        FailoverError::Invalid(m) => Status::invalid_argument(m),
        FailoverError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        FailoverError::Propose(p) => status_of(p, state),
    }
}

fn instance_detail(
    addr: &Addr,
    info: Option<&InstanceInfo>,
    flags: Vec<&str>,
) -> pb::ReplicaDetail {
    let flags = flags.into_iter().map(String::from).collect();
    let Some(i) = info else {
        return pb::ReplicaDetail {
            addr: addr.to_string(),
            flags,
            ..Default::default()
        };
    };
    pb::ReplicaDetail {
        addr: addr.to_string(),
        flags,
        repl_offset: i.repl_offset,
        priority: i.priority.unwrap_or(0),
        master_link_up: i.master_link_up,
        info_age_ms: i.info_refresh.map_or(0, |t| t.elapsed().as_millis() as u64),
        run_id: i.run_id.clone().unwrap_or_default(),
        last_error: i.last_error.clone().unwrap_or_default(),
        following: match (&i.master_host, i.master_port) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            _ => String::new(),
        },
    }
}

fn role(r: Role) -> pb::Role {
    match r {
        Role::Follower => pb::Role::Follower,
        Role::PreCandidate => pb::Role::PreCandidate,
        Role::Candidate => pb::Role::Candidate,
        Role::Leader => pb::Role::Leader,
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    type WatchMastersStream = Pin<Box<dyn Stream<Item = Result<pb::MasterChange, Status>> + Send>>;

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusReply>, Status> {
        let st = self.raft.status();
        let state = self.raft.state();
        let mut members: Vec<pb::Member> = st
            .voters
            .iter()
            .map(|id| (*id, true))
            .chain(st.learners.iter().map(|id| (*id, false)))
            .map(|(id, voter)| {
                let info = state
                    .members
                    .get(&id)
                    .map(|m| m.info.clone())
                    .unwrap_or_default();
                let prog = st.progress.iter().find(|p| p.id == id);
                pb::Member {
                    id,
                    voter,
                    peer_addr: info.peer_addr.unwrap_or_default(),
                    grpc_addr: info.grpc_addr.unwrap_or_default(),
                    sentinel_addr: info.sentinel_addr.unwrap_or_default(),
                    run_id: info.run_id.unwrap_or_default(),
                    matched: prog.map_or(0, |p| p.matched),
                    recent_active: prog.is_some_and(|p| p.recent_active),
                }
            })
            .collect();
        members.sort_by_key(|m| m.id);
        Ok(Response::new(pb::ClusterStatusReply {
            node_id: st.id,
            role: role(st.role).into(),
            leader_id: st.leader_id,
            term: st.term,
            commit_index: st.commit,
            applied_index: st.applied,
            first_index: st.first_index,
            last_index: st.last_index,
            members,
            voters_outgoing: st.voters_outgoing.clone(),
            leader_contact: self.raft.has_leader_contact(),
            current_epoch: state.current_epoch,
            awaiting_replacement: st.awaiting_replacement,
            cluster_version: state.cluster_version(),
        }))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeReply>, Status> {
        let r = req.into_inner();
        self.raft
            .add_node(r.id, &r.peer_addr)
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::AddNodeReply {}))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeReply>, Status> {
        let r = req.into_inner();
        self.raft
            .remove_node(r.id)
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::RemoveNodeReply {}))
    }

    async fn replace_node(
        &self,
        req: Request<pb::ReplaceNodeRequest>,
    ) -> Result<Response<pb::ReplaceNodeReply>, Status> {
        let r = req.into_inner();
        self.raft
            .replace_node(r.id, Some(r.peer_addr.as_str()))
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::ReplaceNodeReply {}))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        let to = req.into_inner().to;
        let timeout = self.raft.election_timeout() * 2;
        self.raft
            .transfer_leader(to, timeout)
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::TransferLeaderReply {
            leader_id: self.raft.status().leader_id,
        }))
    }

    async fn list_masters(
        &self,
        _req: Request<pb::ListMastersRequest>,
    ) -> Result<Response<pb::ListMastersReply>, Status> {
        let state = self.raft.state();
        Ok(Response::new(pb::ListMastersReply {
            masters: state.masters.values().map(master_addr).collect(),
            applied_index: state.applied_index,
            current_epoch: state.current_epoch,
        }))
    }

    async fn get_master(
        &self,
        req: Request<pb::GetMasterRequest>,
    ) -> Result<Response<pb::GetMasterReply>, Status> {
        let r = req.into_inner();
        if let Some((index, error)) = &self.raft.status().halted {
            return Err(Status::unavailable(format!(
                "this node stopped applying at committed entry {index}, which its version \
                 cannot decode ({error}); ask another node"
            )));
        }
        if r.consistency() == pb::Consistency::Linearizable {
            self.raft
                .read_index(READ_TIMEOUT)
                .await
                .map_err(|e| match e {
                    // A read that could not reach a leader must not look like a slow one.
                    ProposeError::Timeout(_) => {
                        Status::unavailable("no leader reachable for a linearizable read")
                    }
                    e => self.status_of(e),
                })?;
        }
        let state = self.raft.state();
        let m = state
            .masters
            .get(&r.name)
            .ok_or_else(|| Status::not_found(format!("no such master '{}'", r.name)))?;
        Ok(Response::new(pb::GetMasterReply {
            master: Some(master_addr(m)),
            leader_id: self.raft.status().leader_id,
            applied_index: state.applied_index,
            current_epoch: state.current_epoch,
        }))
    }

    async fn monitor(
        &self,
        req: Request<pb::MonitorRequest>,
    ) -> Result<Response<pb::MonitorReply>, Status> {
        let r = req.into_inner();
        let port = u16::try_from(r.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Status::invalid_argument("Invalid port number."))?;
        let addr = Addr::new(r.host, port).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        let spec = MasterSpec {
            down_after_ms: or(r.down_after_ms, MasterSpec::DEFAULT_DOWN_AFTER_MS),
            failover_timeout_ms: or(
                r.failover_timeout_ms,
                MasterSpec::DEFAULT_FAILOVER_TIMEOUT_MS,
            ),
            parallel_syncs: if r.parallel_syncs == 0 {
                MasterSpec::DEFAULT_PARALLEL_SYNCS
            } else {
                r.parallel_syncs
            },
            auth_user: Some(r.auth_user).filter(|s| !s.is_empty()),
            auth_pass: Some(r.auth_pass).filter(|s| !s.is_empty()),
            tls: r.tls,
            ..MasterSpec::new(r.name, addr, r.quorum)
        };
        self.raft
            .propose_retrying(Command::Monitor { spec })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::MonitorReply {
            applied_index: self.raft.state().applied_index,
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveReply>, Status> {
        let name = req.into_inner().name;
        self.raft
            .propose_retrying(Command::Remove { name })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::RemoveReply {
            applied_index: self.raft.state().applied_index,
        }))
    }

    async fn get_master_detail(
        &self,
        req: Request<pb::GetMasterDetailRequest>,
    ) -> Result<Response<pb::MasterDetail>, Status> {
        let name = req.into_inner().name;
        let state = self.raft.state();
        let view = self.monitor.borrow().clone();
        let m = state
            .masters
            .get(&name)
            .ok_or_else(|| Status::not_found(format!("no such master '{name}'")))?;
        let failover = if let Some(f) = &m.failover {
            Some(pb::FailoverState {
                phase: "promoting".into(),
                epoch: f.epoch,
                candidate: f.candidate.to_string(),
                reason: f.reason.as_str().into(),
                leader_id: f.leader,
                started_at_ms: f.started_at_ms,
                reconf: Vec::new(),
            })
        } else if let Some(r) = &m.reconf {
            Some(pb::FailoverState {
                phase: "reconfiguring".into(),
                epoch: r.epoch,
                candidate: m.addr.to_string(),
                reason: String::new(),
                leader_id: 0,
                started_at_ms: r.started_at_ms,
                reconf: r
                    .replicas
                    .iter()
                    .map(|(a, st)| pb::ReconfReplica {
                        addr: a.to_string(),
                        stage: format!("{st:?}").to_ascii_lowercase(),
                    })
                    .collect(),
            })
        } else {
            m.failover_request.as_ref().map(|r| pb::FailoverState {
                phase: "requested".into(),
                epoch: 0,
                candidate: r.target.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                reason: r.reason.as_str().into(),
                leader_id: 0,
                started_at_ms: r.at_ms,
                reconf: Vec::new(),
            })
        };
        let history = state
            .history
            .iter()
            .filter(|r| r.master == name)
            .map(|r| pb::FailoverRecord {
                epoch: r.epoch,
                reason: r.reason.as_str().into(),
                from: r.from.to_string(),
                to: r
                    .candidate
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                leader_id: r.leader,
                started_at_ms: r.started_at_ms,
                promoted_at_ms: r.promoted_at_ms.unwrap_or(0),
                ended_at_ms: r.ended_at_ms.unwrap_or(0),
                outcome: r.outcome.clone(),
                promotion_ms: r
                    .promoted_at_ms
                    .map_or(0, |p| p.saturating_sub(r.started_at_ms)),
            })
            .collect();
        Ok(Response::new(pb::MasterDetail {
            master: Some(master_addr(m)),
            down_after_ms: m.down_after_ms,
            failover_timeout_ms: m.failover_timeout_ms,
            parallel_syncs: m.parallel_syncs,
            failover_budget: m.failover_budget,
            failover_budget_window_ms: m.failover_budget_window_ms,
            // The user name is not a secret; the password never leaves the state machine.
            auth_user: m.auth_user.clone().unwrap_or_default(),
            tls: m.tls,
            replicas: m
                .replicas
                .iter()
                .map(|a| {
                    let info = view.get(a);
                    instance_detail(a, info, flags::replica(m, a, info))
                })
                .collect(),
            observations: m
                .observations
                .iter()
                .map(|(node, o)| pb::Observation {
                    node_id: *node,
                    down: o.down,
                    reason: format!("{:?}", o.reason).to_ascii_lowercase(),
                    at_ms: o.at_ms,
                })
                .collect(),
            failover,
            history,
            master_instance: Some(instance_detail(
                &m.addr,
                view.get(&m.addr),
                flags::master(self.raft.node_id(), m, view.get(&m.addr)),
            )),
            applied_index: state.applied_index,
            current_epoch: state.current_epoch,
        }))
    }

    async fn watch_masters(
        &self,
        req: Request<pb::WatchMastersRequest>,
    ) -> Result<Response<Self::WatchMastersStream>, Status> {
        let r = req.into_inner();
        let names: BTreeSet<String> = r.names.into_iter().collect();
        let mut state_rx = self.raft.watch_state();
        let state = state_rx.borrow_and_update().clone();
        for n in &names {
            if !state.masters.contains_key(n) {
                return Err(Status::not_found(format!("no such master '{n}'")));
            }
        }
        let (initial, mut cursor) = if r.from_epoch == 0 {
            (changes::current(&state, &names), changes::cursor_at(&state))
        } else {
            let idx = changes::resume_index(&state, &names, r.from_epoch).map_err(|e| match e {
                changes::ResumeError::Future(..) => Status::invalid_argument(e.to_string()),
                changes::ResumeError::Expired(_) => Status::out_of_range(e.to_string()),
            })?;
            (Vec::new(), idx)
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let span = info_span!("grpc", method = "WatchMasters", from_epoch = r.from_epoch);
        tokio::spawn(
            async move {
                for c in initial {
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                let mut state = state;
                loop {
                    for c in changes::switches_after(&state, &names, cursor) {
                        cursor = (c.index, c.epoch);
                        if tx.send(Ok(c)).await.is_err() {
                            return;
                        }
                    }
                    tokio::select! {
                        changed = state_rx.changed() => if changed.is_err() {
                            let _ = tx.send(Err(Status::unavailable("node is shutting down"))).await;
                            return;
                        },
                        _ = tx.closed() => return,
                    }
                    state = state_rx.borrow_and_update().clone();
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn failover(
        &self,
        req: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::FailoverReply>, Status> {
        let name = req.into_inner().name;
        let epoch = failover::request(
            &self.raft,
            &name,
            FailoverReason::Forced,
            None,
            FAILOVER_TIMEOUT,
        )
        .await
        .map_err(|e| failover_status(e, &self.raft.state()))?;
        Ok(Response::new(pb::FailoverReply { epoch }))
    }

    async fn switchover(
        &self,
        req: Request<pb::SwitchoverRequest>,
    ) -> Result<Response<pb::FailoverReply>, Status> {
        let r = req.into_inner();
        let target = if r.target.is_empty() {
            None
        } else {
            Some(
                r.target
                    .parse::<Addr>()
                    .map_err(|e| Status::invalid_argument(format!("target: {e}")))?,
            )
        };
        let epoch = failover::request(
            &self.raft,
            &r.name,
            FailoverReason::Switchover,
            target,
            FAILOVER_TIMEOUT,
        )
        .await
        .map_err(|e| failover_status(e, &self.raft.state()))?;
        Ok(Response::new(pb::FailoverReply { epoch }))
    }

    async fn set(&self, req: Request<pb::SetRequest>) -> Result<Response<pb::SetReply>, Status> {
        let r = req.into_inner();
        if r.options.is_empty() {
            return Err(Status::invalid_argument("no options given"));
        }
        let options = r.options.into_iter().map(|o| (o.key, o.value)).collect();
        self.raft
            .propose_retrying(Command::Set {
                name: r.name,
                options,
            })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::SetReply {}))
    }

    async fn reset(
        &self,
        req: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetReply>, Status> {
        let pattern = req.into_inner().pattern;
        let out = self
            .raft
            .propose_retrying(Command::Reset { pattern })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::ResetReply { count: out.count }))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::PauseReply>, Status> {
        let master = req.into_inner().name;
        self.raft
            .propose(Command::Pause { master })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::PauseReply {}))
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::PauseReply>, Status> {
        let master = req.into_inner().name;
        self.raft
            .propose(Command::Resume { master })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::PauseReply {}))
    }
}
