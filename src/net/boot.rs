//! Deciding whether a node on an empty data dir may bootstrap a new cluster.
//!
//! A node told that the cluster is new (`initial_cluster_state = "new"` or `--bootstrap`)
//! still asks every configured peer first (`Hello` on the peer port), as etcd does before it
//! bootstraps a member:
//! - a peer that has run with this node before (its announcement is committed, or the
//!   answering leader has replicated entries to it) means this node lost its data: it joins
//!   without a vote and waits to be re-admitted (`ctl replace-node`);
//! - a formed cluster in which this node is a member that never ran: it joins as the initial
//!   member it is (every peer must have answered, so none of them knows better);
//! - a formed cluster that does not list this node: it waits to be added (`ctl add-node`);
//! - every peer answered and none belongs to a formed cluster: bootstrap.
//!
//! A peer that does not answer is waited for: bootstrapping beside a peer that may hold the
//! cluster's log would fork it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{ClientTlsConfig, Endpoint};
use tracing::{error, info, warn};

use super::ClusterKey;
use crate::consensus::{BootDecision, RaftHandle};
use crate::model::NodeId;
use crate::pb::peer::raft_peer_client::RaftPeerClient;
use crate::pb::peer::{HelloReply, HelloRequest};
use crate::shutdown::Shutdown;

const ASK_EVERY: Duration = Duration::from_secs(1);
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What the answers so far allow.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Decided.
    Decided(BootDecision),
    /// A peer has another cluster id: a misconfiguration; keep waiting and say so.
    Foreign {
        /// The peer.
        peer: NodeId,
        /// Its cluster id.
        cluster_id: String,
    },
    /// Some peers have not answered yet.
    Waiting {
        /// Peers without an answer.
        missing: Vec<NodeId>,
    },
}

/// Pure decision from the answers of the configured peers (`None`: no answer).
pub fn judge(
    me: NodeId,
    cluster_id: &str,
    peers: &BTreeMap<NodeId, String>,
    answers: &BTreeMap<NodeId, Option<HelloReply>>,
) -> Verdict {
    let others: Vec<NodeId> = peers.keys().copied().filter(|&p| p != me).collect();
    let got: Vec<(NodeId, &HelloReply)> = others
        .iter()
        .filter_map(|p| answers.get(p).and_then(|a| a.as_ref()).map(|a| (*p, a)))
        .collect();
    if let Some((peer, a)) = got.iter().find(|(_, a)| a.cluster_id != cluster_id) {
        return Verdict::Foreign {
            peer: *peer,
            cluster_id: a.cluster_id.clone(),
        };
    }
    if got.iter().any(|(_, a)| a.initialized && a.asker_has_run) {
        return Verdict::Decided(BootDecision::Join { awaiting: true });
    }
    let missing: Vec<NodeId> = others
        .iter()
        .copied()
        .filter(|p| !got.iter().any(|(g, _)| g == p))
        .collect();
    if !missing.is_empty() {
        return Verdict::Waiting { missing };
    }
    if got.iter().any(|(_, a)| a.initialized) {
        let member = got.iter().any(|(_, a)| a.initialized && a.asker_is_member);
        return Verdict::Decided(BootDecision::Join { awaiting: !member });
    }
    Verdict::Decided(BootDecision::Bootstrap(peers.keys().copied().collect()))
}

async fn ask(
    me: NodeId,
    cluster_id: &str,
    addr: &str,
    tls: Option<&ClientTlsConfig>,
    key: Option<&ClusterKey>,
) -> Option<HelloReply> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .ok()?
        .connect_timeout(ASK_TIMEOUT)
        .timeout(ASK_TIMEOUT);
    if let Some(t) = tls {
        ep = ep.tls_config(t.clone()).ok()?;
    }
    let ch = ep.connect().await.ok()?;
    let mut req = HelloRequest {
        cluster_id: cluster_id.to_string(),
        from: me,
        nonce: Vec::new(),
        mac: Vec::new(),
    };
    if let Some(k) = key {
        req.nonce = rand::random::<[u8; 16]>().to_vec();
        req.mac = k.sign_hello(&req);
    }
    let nonce = req.nonce.clone();
    let r = match RaftPeerClient::new(ch).hello(req).await {
        Ok(r) => r.into_inner(),
        Err(st) => {
            if st.code() == tonic::Code::Unauthenticated {
                warn!(%addr, "peer refused our hello: every node needs the same [security] cluster_secret_file");
            }
            return None;
        }
    };
    // An answer that is not from a holder of the secret counts as no answer.
    if let Some(k) = key {
        if !k.verify_hello_reply(&nonce, &r) {
            warn!(%addr, "ignoring a hello reply without a valid cluster secret MAC");
            return None;
        }
    }
    Some(r)
}

/// Asks the configured peers until a decision is possible, then hands it to the node.
pub async fn decide(
    raft: RaftHandle,
    cluster_id: String,
    peers: BTreeMap<NodeId, String>,
    tls: Option<ClientTlsConfig>,
    key: Option<Arc<ClusterKey>>,
    mut shutdown: Shutdown,
) {
    let me = raft.node_id();
    let mut last_report: Option<tokio::time::Instant> = None;
    loop {
        let asks = peers.iter().filter(|(id, _)| **id != me).map(|(id, addr)| {
            let (cluster_id, tls, key) = (&cluster_id, tls.as_ref(), key.as_deref());
            async move { (*id, ask(me, cluster_id, addr, tls, key).await) }
        });
        let answers: BTreeMap<NodeId, Option<HelloReply>> =
            futures::future::join_all(asks).await.into_iter().collect();
        let report = last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        match judge(me, &cluster_id, &peers, &answers) {
            Verdict::Decided(d) => {
                match &d {
                    BootDecision::Bootstrap(v) => {
                        info!(voters = ?v, "every peer answered and none belongs to a formed cluster: bootstrapping")
                    }
                    BootDecision::Join { awaiting: true } => error!(
                        node_id = me,
                        "the data dir is empty, but a peer belongs to a formed cluster that knows this \
                         node (or does not list it): not bootstrapping. This node does not vote until \
                         it is re-admitted: run `raft-sentinel ctl replace-node --id {me}` (or \
                         `ctl add-node` if it is not a member)"
                    ),
                    BootDecision::Join { awaiting: false } => info!(
                        "the cluster was formed without this node, which never ran in it: joining \
                         as the initial member it is"
                    ),
                }
                if raft.decide_boot(d).await.is_err() {
                    return;
                }
                return;
            }
            Verdict::Foreign {
                peer,
                cluster_id: theirs,
            } if report => {
                last_report = Some(tokio::time::Instant::now());
                error!(peer_id = peer, their_cluster = %theirs, ours = %cluster_id, "a configured peer belongs to another cluster; not bootstrapping");
            }
            Verdict::Waiting { missing } if report => {
                last_report = Some(tokio::time::Instant::now());
                warn!(?missing, "waiting for every configured peer to answer before bootstrapping a new cluster");
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(ASK_EVERY) => {}
            _ = shutdown.recv() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> BTreeMap<NodeId, String> {
        (1..=3).map(|i| (i, format!("h{i}:7701"))).collect()
    }

    fn reply(initialized: bool, member: bool, has_run: bool) -> Option<HelloReply> {
        Some(HelloReply {
            cluster_id: "c".into(),
            node_id: 0,
            initialized,
            asker_is_member: member,
            asker_has_run: has_run,
            commit_index: 0,
            term: 0,
            mac: Vec::new(),
        })
    }

    fn answers(
        a2: Option<HelloReply>,
        a3: Option<HelloReply>,
    ) -> BTreeMap<NodeId, Option<HelloReply>> {
        [(2, a2), (3, a3)].into_iter().collect()
    }

    #[test]
    fn all_empty_bootstraps() {
        let v = judge(
            1,
            "c",
            &peers(),
            &answers(reply(false, false, false), reply(false, false, false)),
        );
        assert_eq!(v, Verdict::Decided(BootDecision::Bootstrap(vec![1, 2, 3])));
    }

    #[test]
    fn a_missing_peer_is_waited_for() {
        let v = judge(1, "c", &peers(), &answers(reply(false, false, false), None));
        assert_eq!(v, Verdict::Waiting { missing: vec![3] });
    }

    #[test]
    fn one_peer_that_knows_this_node_is_enough_to_refuse() {
        let v = judge(1, "c", &peers(), &answers(None, reply(true, true, true)));
        assert_eq!(v, Verdict::Decided(BootDecision::Join { awaiting: true }));
    }

    #[test]
    fn a_late_initial_member_joins_without_the_guard() {
        let v = judge(
            1,
            "c",
            &peers(),
            &answers(reply(true, true, false), reply(false, false, false)),
        );
        assert_eq!(v, Verdict::Decided(BootDecision::Join { awaiting: false }));
        // ... but only once every peer answered.
        let v = judge(1, "c", &peers(), &answers(reply(true, true, false), None));
        assert_eq!(v, Verdict::Waiting { missing: vec![3] });
    }

    #[test]
    fn a_cluster_that_does_not_list_this_node_means_waiting_to_be_added() {
        let v = judge(
            1,
            "c",
            &peers(),
            &answers(reply(true, false, false), reply(true, false, false)),
        );
        assert_eq!(v, Verdict::Decided(BootDecision::Join { awaiting: true }));
    }

    #[test]
    fn another_cluster_id_is_reported() {
        let mut other = reply(false, false, false);
        other.as_mut().unwrap().cluster_id = "x".into();
        let v = judge(
            1,
            "c",
            &peers(),
            &answers(other, reply(false, false, false)),
        );
        assert!(matches!(v, Verdict::Foreign { peer: 2, .. }));
    }
}
