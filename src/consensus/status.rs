//! What the node task publishes about itself: its Raft status (role, term, indices,
//! membership, progress), the membership rule for incoming Raft messages, and the events of
//! applied entries.

use raft::eraftpb::ConfState;
use serde::Serialize;

use crate::fsm::Event;
use crate::model::NodeId;

/// Role of a node in its current term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows a leader (or has none).
    #[default]
    Follower,
    /// Pre-vote round.
    PreCandidate,
    /// Election round.
    Candidate,
    /// Leader.
    Leader,
}

/// Replication progress of one peer, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerProgress {
    /// Peer id.
    pub id: NodeId,
    /// Highest index known replicated there.
    pub matched: u64,
    /// Next index to send.
    pub next_idx: u64,
    /// Probe, Replicate or Snapshot.
    pub state: String,
    /// Heard from within an election timeout.
    pub recent_active: bool,
}

/// A snapshot of the node's Raft status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RaftStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Known leader (0: none).
    pub leader_id: NodeId,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// First index still in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Voters (incoming configuration).
    pub voters: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Voters of the outgoing configuration while joint.
    pub voters_outgoing: Vec<NodeId>,
    /// Outgoing voters that become learners when the joint configuration is left.
    pub learners_next: Vec<NodeId>,
    /// Index of the last proposed conf change.
    pub pending_conf_index: u64,
    /// Per-peer progress (leader only).
    pub progress: Vec<PeerProgress>,
    /// Started on an empty data dir in an existing cluster: does not vote until re-admitted.
    pub awaiting_replacement: bool,
    /// Still deciding whether to bootstrap a new cluster (asking the configured peers).
    pub boot_pending: bool,
    /// Applying stopped at this committed entry, which this node cannot decode (index,
    /// error). The node serves no master address until it runs a version that reads it.
    pub halted: Option<(u64, String)>,
}

/// A Raft configuration as the membership rule reads it: both halves of a joint
/// configuration, and the learners present and to be.
#[derive(Clone, Copy, Debug)]
pub struct Membership<'a> {
    /// Voters (the incoming half while joint).
    pub voters: &'a [NodeId],
    /// Learners.
    pub learners: &'a [NodeId],
    /// Voters of the outgoing half while joint.
    pub voters_outgoing: &'a [NodeId],
    /// Outgoing voters that become learners when the joint configuration is left.
    pub learners_next: &'a [NodeId],
}

impl<'a> Membership<'a> {
    /// The configuration the node applied.
    pub fn of(cs: &'a ConfState) -> Self {
        Membership {
            voters: &cs.voters,
            learners: &cs.learners,
            voters_outgoing: &cs.voters_outgoing,
            learners_next: &cs.learners_next,
        }
    }

    /// `id` belongs to the configuration, in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        [
            self.voters,
            self.learners,
            self.voters_outgoing,
            self.learners_next,
        ]
        .iter()
        .any(|m| m.contains(&id))
    }

    /// No configuration yet: a node waiting to join, or to bootstrap.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.learners.is_empty()
    }

    /// Whether Raft messages from `from` are accepted: the one rule for the peer port and
    /// the node. Members of the configuration; a node without a configuration yet (joining)
    /// accepts its configured peers, from which its snapshot comes.
    pub fn accepts_from(&self, from: NodeId, configured_peer: bool) -> bool {
        self.contains(from) || (self.is_empty() && configured_peer)
    }
}

impl RaftStatus {
    /// The configuration this status reports.
    pub fn membership(&self) -> Membership<'_> {
        Membership {
            voters: &self.voters,
            learners: &self.learners,
            voters_outgoing: &self.voters_outgoing,
            learners_next: &self.learners_next,
        }
    }

    /// The known leader, if any.
    pub fn leader(&self) -> Option<NodeId> {
        (self.leader_id != 0).then_some(self.leader_id)
    }
}

/// An event from an applied entry.
#[derive(Clone, Debug)]
pub struct AppliedEvent {
    /// Index of the entry that caused it.
    pub index: u64,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
    use raft::storage::MemStorage;
    use raft::RawNode;

    use super::*;

    fn m<'a>(v: &'a [u64], l: &'a [u64], vo: &'a [u64], ln: &'a [u64]) -> Membership<'a> {
        Membership {
            voters: v,
            learners: l,
            voters_outgoing: vo,
            learners_next: ln,
        }
    }

    #[test]
    fn members_of_either_half_and_learners_to_be_are_accepted() {
        // Joint: 3 leaves the voters and becomes a learner.
        let joint = m(&[1, 2], &[], &[1, 2, 3], &[3]);
        assert!(joint.accepts_from(3, false));
        assert!(!joint.accepts_from(4, true));
        // Only learners_next (never without voters_outgoing in raft-rs, but one rule).
        assert!(m(&[1], &[], &[], &[5]).accepts_from(5, false));
        // Unconfigured: the configured peers only.
        assert!(m(&[], &[], &[], &[]).accepts_from(2, true));
        assert!(!m(&[], &[], &[], &[]).accepts_from(2, false));
    }

    /// A voter demoted to learner through a joint configuration, with raft-rs's own
    /// conf-change code: accepted by the rule at every step, from the configuration the node
    /// applied and from the status the peer port reads alike.
    #[test]
    fn a_voter_being_demoted_is_accepted_throughout() {
        let store = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
        let cfg = raft::Config {
            id: 1,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw = RawNode::new(&cfg, store, &logger).unwrap();
        let mut demote = ConfChangeSingle::default();
        demote.set_change_type(ConfChangeType::AddLearnerNode);
        demote.node_id = 3;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(demote);
        cc.set_transition(ConfChangeTransition::Explicit);
        let joint = raw.apply_conf_change(&cc).unwrap();
        assert_eq!(joint.learners_next, vec![3]);
        assert!(joint.voters_outgoing.contains(&3) && !joint.voters.contains(&3));
        let left = raw.apply_conf_change(&ConfChangeV2::default()).unwrap();
        assert_eq!(
            (left.voters.clone(), left.learners.clone()),
            (vec![1, 2], vec![3])
        );
        for cs in [&joint, &left] {
            let status = RaftStatus {
                voters: cs.voters.clone(),
                learners: cs.learners.clone(),
                voters_outgoing: cs.voters_outgoing.clone(),
                learners_next: cs.learners_next.clone(),
                ..RaftStatus::default()
            };
            for id in 1..=4 {
                let node = Membership::of(cs).accepts_from(id, true);
                assert_eq!(node, id != 4, "node {id} in {cs:?}");
                assert_eq!(status.membership().accepts_from(id, true), node);
            }
        }
    }
}
