//! Sending side of the peer port: one task per peer with a bounded queue, lazy connection,
//! jittered exponential backoff, and failures reported back to Raft.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tracing::{debug, info_span, warn, Instrument};

use super::{ClusterKey, MAX_PEER_MESSAGE};
use crate::consensus::{encode, Mailbox, Transport};
use crate::model::NodeId;
use crate::pb::peer::raft_peer_client::RaftPeerClient;
use crate::pb::peer::RaftBatch;

/// Messages queued per peer; beyond it they are dropped and the peer reported unreachable.
const QUEUE: usize = 1024;
/// Messages sent in one RPC at most.
const BATCH: usize = 256;
/// Encoded bytes in one RPC at most, beyond a single message (leaves room for framing).
const BATCH_BYTES: usize = MAX_PEER_MESSAGE / 2;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The gRPC implementation of [`Transport`].
pub struct PeerNetwork {
    me: NodeId,
    cluster_id: String,
    mailbox: Mailbox,
    /// Client side of mutual TLS (None: plaintext).
    tls: Option<ClientTlsConfig>,
    /// Signs every batch with the cluster secret, when one is configured.
    key: Option<Arc<ClusterKey>>,
    peers: Mutex<HashMap<NodeId, PeerSender>>,
}

struct PeerSender {
    addr: String,
    tx: mpsc::Sender<Message>,
    task: JoinHandle<()>,
}

impl Drop for PeerSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PeerNetwork {
    /// A transport for node `me`; failures are reported into `mailbox`.
    pub fn new(
        me: NodeId,
        cluster_id: String,
        mailbox: Mailbox,
        tls: Option<ClientTlsConfig>,
        key: Option<Arc<ClusterKey>>,
    ) -> Self {
        PeerNetwork {
            me,
            cluster_id,
            mailbox,
            tls,
            key,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn spawn_sender(&self, to: NodeId, addr: String) -> Result<PeerSender, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(3))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.clone())
                .map_err(|e| format!("tls for peer {addr}: {e}"))?;
        }
        let channel = ep.connect_lazy();
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(
            sender_loop(
                self.me,
                to,
                self.cluster_id.clone(),
                self.key.clone(),
                channel,
                rx,
                self.mailbox.clone(),
            )
            .instrument(info_span!("raft_peer", peer_id = to, addr = %addr)),
        );
        Ok(PeerSender { addr, tx, task })
    }
}

impl Transport for PeerNetwork {
    fn send(&self, msgs: Vec<Message>) {
        let peers = self.peers.lock();
        for m in msgs {
            let to = m.to;
            let is_snap = m.get_msg_type() == MessageType::MsgSnapshot;
            let queued = peers.get(&to).is_some_and(|p| p.tx.try_send(m).is_ok());
            if !queued {
                self.mailbox.report_unreachable(to);
                if is_snap {
                    self.mailbox.report_snapshot(to, false);
                }
            }
        }
    }

    fn set_peers(&self, addrs: BTreeMap<NodeId, String>) {
        let mut peers = self.peers.lock();
        peers.retain(|id, p| addrs.get(id) == Some(&p.addr));
        for (id, addr) in addrs {
            if id == self.me || peers.contains_key(&id) {
                continue;
            }
            match self.spawn_sender(id, addr) {
                Ok(s) => {
                    peers.insert(id, s);
                }
                Err(e) => warn!(peer_id = id, error = %e, "cannot reach peer"),
            }
        }
    }
}

async fn sender_loop(
    me: NodeId,
    to: NodeId,
    cluster_id: String,
    key: Option<Arc<ClusterKey>>,
    channel: Channel,
    mut rx: mpsc::Receiver<Message>,
    mailbox: Mailbox,
) {
    let mut client = RaftPeerClient::new(channel)
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE);
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u64;
    // A message that did not fit the previous batch starts the next one.
    let mut carry: Option<Message> = None;
    loop {
        let first = match carry.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => break,
            },
        };
        // Bounded in bytes as well: a snapshot (at most half the message limit, see
        // `fsm::limits`) never shares an RPC with appends that would push it over.
        let mut bytes = first.compute_size() as usize;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => {
                    let size = m.compute_size() as usize;
                    if bytes + size > BATCH_BYTES {
                        carry = Some(m);
                        break;
                    }
                    bytes += size;
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        let has_snap = batch
            .iter()
            .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        let mut req = RaftBatch {
            cluster_id: cluster_id.clone(),
            from: me,
            to,
            msgs: batch.iter().map(encode).collect(),
            mac: Vec::new(),
        };
        if let Some(k) = &key {
            req.mac = k.sign(&req);
        }
        match client.send(req).await {
            Ok(_) => {
                if failures > 0 {
                    debug!(failures, "peer reachable again");
                }
                failures = 0;
                backoff = BACKOFF_MIN;
                if has_snap {
                    mailbox.report_snapshot(to, true);
                }
            }
            Err(status) => {
                failures += 1;
                // Log the first failure and then rarely: a dead peer must not flood the log.
                if failures == 1 || failures.is_power_of_two() {
                    if status.code() == tonic::Code::Unauthenticated {
                        warn!(failures, "peer refused our batches: every node needs the same [security] cluster_secret_file");
                    } else {
                        warn!(failures, error = %status.message(), code = ?status.code(), "sending to peer failed");
                    }
                }
                mailbox.report_unreachable(to);
                if has_snap {
                    mailbox.report_snapshot(to, false);
                }
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                // What queued up meanwhile is stale; Raft resends what still matters.
                if let Some(m) = carry.take() {
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        mailbox.report_snapshot(to, false);
                    }
                }
                while let Ok(m) = rx.try_recv() {
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        mailbox.report_snapshot(to, false);
                    }
                }
            }
        }
    }
}
