//! Receiving side of the peer port: checks who is sending and hands messages to the node.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft::eraftpb::MessageType;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::ClusterKey;
use crate::consensus::{decode_message, RaftHandle, INIT_INDEX};
use crate::model::NodeId;
use crate::pb::peer::raft_peer_server::RaftPeer;
use crate::pb::peer::{Ack, HelloReply, HelloRequest, RaftBatch};

/// The `RaftPeer` gRPC service of one node.
pub struct PeerService {
    raft: RaftHandle,
    cluster_id: String,
    /// Peers from the config: accepted while this node has no Raft configuration yet.
    configured: BTreeMap<NodeId, String>,
    /// The cluster secret: when set, every batch must carry its MAC.
    key: Option<Arc<ClusterKey>>,
}

impl PeerService {
    /// A service delivering into `raft`.
    pub fn new(
        raft: RaftHandle,
        cluster_id: String,
        configured: BTreeMap<NodeId, String>,
        key: Option<Arc<ClusterKey>>,
    ) -> Self {
        PeerService {
            raft,
            cluster_id,
            configured,
            key,
        }
    }

    /// Whether batches from `id` are taken: the node's own rule (see
    /// [`crate::consensus::Membership::accepts_from`]), on the status it last published.
    fn accepts_from(&self, id: NodeId) -> bool {
        self.raft
            .status()
            .membership()
            .accepts_from(id, self.configured.contains_key(&id))
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send(&self, req: Request<RaftBatch>) -> Result<Response<Ack>, Status> {
        let remote = req.remote_addr();
        let batch = req.into_inner();
        // Authenticity first: nothing in an unauthenticated batch is looked at, let alone
        // stepped. The reply says nothing about why.
        if let Some(key) = &self.key {
            if !key.verify(&batch) {
                let remote = remote.map(|a| a.to_string()).unwrap_or_default();
                warn!(%remote, "rejecting raft batch without a valid cluster secret MAC");
                return Err(Status::unauthenticated("unauthenticated"));
            }
        }
        let me = self.raft.node_id();
        if batch.cluster_id != self.cluster_id {
            warn!(peer_id = batch.from, cluster = %batch.cluster_id, "rejecting raft batch from another cluster");
            return Err(Status::permission_denied(format!(
                "cluster id '{}' does not match '{}'",
                batch.cluster_id, self.cluster_id
            )));
        }
        if batch.to != me {
            return Err(Status::invalid_argument(format!(
                "batch for node {} delivered to node {me}",
                batch.to
            )));
        }
        if !self.accepts_from(batch.from) {
            warn!(
                peer_id = batch.from,
                "rejecting raft batch from a node that is not a member"
            );
            return Err(Status::permission_denied(format!(
                "node {} is not a member of this cluster",
                batch.from
            )));
        }
        let mut dropped = 0u32;
        for bytes in &batch.msgs {
            let msg = decode_message(bytes)
                .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
            // A follower forwards a transfer request with `from` set to the transferee, so
            // that one type may name another member; everything else comes from its sender.
            let forwarded_transfer =
                msg.get_msg_type() == MessageType::MsgTransferLeader && self.accepts_from(msg.from);
            if (msg.from != batch.from && !forwarded_transfer) || msg.to != me {
                return Err(Status::invalid_argument(format!(
                    "message from {} to {} inside a batch from {} to {me}",
                    msg.from, msg.to, batch.from
                )));
            }
            if !self.raft.step(msg) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            debug!(
                peer_id = batch.from,
                dropped, "mailbox full; raft will retransmit"
            );
        }
        Ok(Response::new(Ack { dropped }))
    }

    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let remote = req.remote_addr();
        let req = req.into_inner();
        if let Some(key) = &self.key {
            if !key.verify_hello(&req) {
                let remote = remote.map(|a| a.to_string()).unwrap_or_default();
                warn!(%remote, "rejecting hello without a valid cluster secret MAC");
                return Err(Status::unauthenticated("unauthenticated"));
            }
        }
        let from = req.from;
        let st = self.raft.status();
        let state = self.raft.state();
        let members = st.membership();
        let initialized = !members.is_empty() && !st.boot_pending;
        let asker_is_member = members.contains(from);
        let asker_has_run = state
            .members
            .get(&from)
            .is_some_and(|m| m.info.run_id.is_some())
            || st
                .progress
                .iter()
                .any(|p| p.id == from && p.matched > INIT_INDEX);
        let mut reply = HelloReply {
            cluster_id: self.cluster_id.clone(),
            node_id: self.raft.node_id(),
            initialized,
            asker_is_member,
            asker_has_run,
            commit_index: st.commit,
            term: st.term,
            mac: Vec::new(),
        };
        if let Some(key) = &self.key {
            reply.mac = key.sign_hello_reply(&req.nonce, &reply);
        }
        Ok(Response::new(reply))
    }
}
