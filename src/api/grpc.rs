//! The public gRPC service (`raftsentinel.v1.Coordinator`). Writes reply after the entry is
//! applied; errors map to gRPC codes in one place ([`status_of`]).

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::consensus::{ProposeError, RaftHandle, Role};
use crate::fsm::{ClusterState, Command, MasterSpec, MasterState, RejectKind};
use crate::model::Addr;
use crate::pb::api as pb;
use crate::pb::api::coordinator_server::Coordinator;

/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_HEADER: &str = "x-leader-id";
/// Metadata key carrying the leader's gRPC address on `UNAVAILABLE`.
pub const LEADER_ADDR_HEADER: &str = "x-leader-grpc";

const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The `Coordinator` service of one node.
#[derive(Clone)]
pub struct CoordinatorService {
    raft: RaftHandle,
}

impl CoordinatorService {
    /// A service answering for `raft`.
    pub fn new(raft: RaftHandle) -> Self {
        CoordinatorService { raft }
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
        ProposeError::Shutdown => Status::unavailable(e.to_string()),
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
        let spec = MasterSpec {
            name: r.name,
            addr,
            quorum: r.quorum,
            down_after_ms: if r.down_after_ms == 0 {
                5000
            } else {
                r.down_after_ms
            },
            failover_timeout_ms: if r.failover_timeout_ms == 0 {
                60_000
            } else {
                r.failover_timeout_ms
            },
            parallel_syncs: if r.parallel_syncs == 0 {
                1
            } else {
                r.parallel_syncs
            },
            auth_user: Some(r.auth_user).filter(|s| !s.is_empty()),
            auth_pass: Some(r.auth_pass).filter(|s| !s.is_empty()),
            tls: r.tls,
        };
        self.raft
            .propose(Command::Monitor { spec })
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
            .propose(Command::Remove { name })
            .await
            .map_err(|e| self.status_of(e))?;
        Ok(Response::new(pb::RemoveReply {
            applied_index: self.raft.state().applied_index,
        }))
    }
}
