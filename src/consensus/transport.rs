//! How Raft messages leave a node, and an in-memory network for in-process clusters.
//!
//! The node never waits on the network: [`Transport::send`] only enqueues. Failed deliveries
//! come back through the [`Mailbox`] as unreachable or snapshot reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::mailbox::Mailbox;
use crate::model::NodeId;
use parking_lot::RwLock;
use raft::eraftpb::{Message, MessageType};

/// Outbound side of the Raft transport.
pub trait Transport: Send + Sync + 'static {
    /// Enqueues messages for delivery. Never blocks; may drop (Raft retransmits).
    fn send(&self, msgs: Vec<Message>);
    /// The set of peers and their addresses changed (membership change or announcement).
    fn set_peers(&self, peers: BTreeMap<NodeId, String>);
}

/// An in-memory network connecting in-process nodes, in the style of raft-rs's test harness:
/// links can be cut one way, nodes isolated, and everything healed again.
#[derive(Clone, Default)]
pub struct MemNetwork {
    inner: Arc<RwLock<MemInner>>,
}

#[derive(Default)]
struct MemInner {
    nodes: HashMap<NodeId, Mailbox>,
    /// Directed links that drop everything: (from, to).
    cut: HashSet<(NodeId, NodeId)>,
}

impl MemNetwork {
    /// A new empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects a node's mailbox and returns its transport.
    pub fn register(&self, id: NodeId, mailbox: Mailbox) -> MemTransport {
        self.inner.write().nodes.insert(id, mailbox);
        MemTransport {
            from: id,
            net: self.clone(),
        }
    }

    /// Removes a node (it crashed): messages to it are lost.
    pub fn unregister(&self, id: NodeId) {
        self.inner.write().nodes.remove(&id);
    }

    /// Drops messages from `from` to `to` (one direction).
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.inner.write().cut.insert((from, to));
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: NodeId) {
        let mut inner = self.inner.write();
        let ids: Vec<NodeId> = inner.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                inner.cut.insert((id, other));
                inner.cut.insert((other, id));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.inner.write().cut.clear();
    }
}

/// One node's view of a [`MemNetwork`].
pub struct MemTransport {
    from: NodeId,
    net: MemNetwork,
}

impl Transport for MemTransport {
    fn send(&self, msgs: Vec<Message>) {
        let inner = self.net.inner.read();
        let me = inner.nodes.get(&self.from).cloned();
        for m in msgs {
            let to = m.to;
            let is_snap = m.get_msg_type() == MessageType::MsgSnapshot;
            let delivered = !inner.cut.contains(&(self.from, to))
                && inner.nodes.get(&to).is_some_and(|mb| mb.deliver(m).is_ok());
            if let Some(me) = &me {
                if !delivered {
                    me.report_unreachable(to);
                }
                if is_snap {
                    me.report_snapshot(to, delivered);
                }
            }
        }
    }

    fn set_peers(&self, _peers: BTreeMap<NodeId, String>) {}
}
