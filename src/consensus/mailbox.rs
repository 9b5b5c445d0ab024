//! The mailbox protocol of the node task: the requests every other part of the process
//! sends it (peer messages, proposals, reads, membership changes, transport reports) and the
//! errors it answers with. The node, the handle and the transports all speak it; none of them
//! needs the others to.

use std::time::Duration;

use raft::eraftpb::{ConfChangeV2, Message};
use tokio::sync::{mpsc, oneshot};

use crate::fsm::{Command, Outcome, Rejection};
use crate::model::NodeId;

/// Capacity of the node's mailbox. Peer messages beyond it are dropped (Raft retransmits);
/// local callers wait.
pub const MAILBOX_CAPACITY: usize = 4096;

/// Messages to the node task.
pub(crate) enum NodeMsg {
    Step(Message),
    Propose {
        cmd: Command,
        reply: oneshot::Sender<Result<Outcome, ProposeError>>,
    },
    /// Several commands, appended in this order (in one entry where they may share one).
    ProposeAll {
        cmds: Vec<(Command, oneshot::Sender<Result<Outcome, ProposeError>>)>,
    },
    ConfChange {
        cc: ConfChangeV2,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    TransferLeader(NodeId),
    Unreachable(NodeId),
    SnapshotStatus(NodeId, bool),
    Boot(BootDecision),
}

/// The outcome of asking the configured peers, for a node started with [`super::Boot::Decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootDecision {
    /// No peer belongs to a formed cluster: bootstrap with these voters.
    Bootstrap(Vec<NodeId>),
    /// A formed cluster exists. `awaiting`: this node ran in it before (or is not a member)
    /// and must not vote until re-admitted; otherwise it is an initial member that never
    /// started and takes the cluster's state as it is.
    Join {
        /// Guard the vote (see [`super::VoteGuard`]).
        awaiting: bool,
    },
}

/// Why a proposal, read or membership change did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Applied, but the state machine refused it (nothing changed).
    #[error("{0}")]
    Rejected(Rejection),
    /// This node cannot do it now; the leader (if known) can.
    #[error("not the leader{}", leader.map(|l| format!("; leader is node {l}")).unwrap_or_else(|| "; no leader known".into()))]
    NotLeader {
        /// Known leader.
        leader: Option<NodeId>,
    },
    /// No answer in time; the outcome is unknown.
    #[error("timed out after {0:?}; the outcome is unknown")]
    Timeout(Duration),
    /// The leader the proposal went to lost leadership before it was applied here; the entry
    /// may or may not commit under the next leader. Failing fast lets callers retry at once
    /// instead of waiting for a timeout after a leader crash.
    #[error("the leader changed before the proposal was applied; the outcome is unknown")]
    LeaderChanged,
    /// The request itself is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with the current membership.
    #[error("{0}")]
    Precondition(String),
    /// Another membership change is still being applied (or a joint configuration not left
    /// yet): Raft would drop this one without a word. Nothing was proposed; retry later.
    #[error("another membership change is still being applied; retry")]
    MembershipBusy,
    /// The node is stopping.
    #[error("the node is shutting down")]
    Shutdown,
}

/// Inbound side of a node: where the transport delivers messages and reports.
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub(crate) tx: mpsc::Sender<NodeMsg>,
}

/// The node's mailbox is full or the node stopped; the message was dropped.
#[derive(Debug, thiserror::Error)]
#[error("raft node mailbox is full or closed")]
pub struct MailboxFull;

impl Mailbox {
    /// Hands a message from a peer to the node. Drops it when the mailbox is full.
    pub fn deliver(&self, msg: Message) -> Result<(), MailboxFull> {
        self.tx
            .try_send(NodeMsg::Step(msg))
            .map_err(|_| MailboxFull)
    }

    /// A send to `peer` failed.
    pub fn report_unreachable(&self, peer: NodeId) {
        let _ = self.tx.try_send(NodeMsg::Unreachable(peer));
    }

    /// A snapshot to `peer` was delivered (`ok`) or failed.
    pub fn report_snapshot(&self, peer: NodeId, ok: bool) {
        let _ = self.tx.try_send(NodeMsg::SnapshotStatus(peer, ok));
    }
}

/// The receiving half of a node's mailbox, handed to [`RaftNode::start`].
pub struct MailboxReceiver(pub(super) mpsc::Receiver<NodeMsg>);

/// A new mailbox: the sending half for transports and handles, the receiving half for the
/// node.
pub(super) fn channel() -> (Mailbox, MailboxReceiver) {
    let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
    (Mailbox { tx }, MailboxReceiver(rx))
}
