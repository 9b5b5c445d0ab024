//! The replicated state machine: pure, deterministic, no tokio, no network, no Raft types.
//!
//! [`ClusterState::apply`] takes a committed [`Command`] and returns the [`Event`]s it caused.
//! Every node applies the same log and therefore holds the same state and emits the same events.
//!
//! # Down votes expire
//!
//! A master is objectively down (ODOWN) when `quorum` voters' committed `Observe` entries say
//! it is down. A vote counts only while it is recent: its node must have re-affirmed it within
//! the vote lifetime `max(2 × down_after, 5 s)` ([`MasterState::vote_ttl_ms`]). Without this, a
//! node that voted down and was then stopped (or removed, or cut off from everyone) would lend
//! its vote forever, and a much later blip at one other node would complete the quorum.
//!
//! The rule is deterministic and needs no new command type:
//! - Every `Observe` carries its proposer's wall clock (`at_ms`). A node that sees the master
//!   down re-proposes the same `Observe` every quarter of the lifetime, which moves its vote's
//!   `at_ms` forward (the monitor's probe does this; an up vote is never re-affirmed, it does
//!   not count anyway).
//! - Freshness is judged against a time taken from the log, never a local clock: the `at_ms`
//!   of the entry being applied. A down vote counts if it is at most the lifetime older than
//!   that time, and at most the lifetime newer (a vote from the future means the voter's clock
//!   is ahead, and counting it would stretch its life by the skew).
//! - ODOWN is evaluated when an `Observe` applies, at that entry's time. A `FailoverStart` for
//!   an ODOWN re-checks the votes at its own time (the leader's clock), so a quorum whose
//!   votes went stale without anyone proposing since is not acted on. The leader's executor
//!   applies the same test before proposing.
//! - Entries without a time (membership changes, `SENTINEL SET`) evaluate at
//!   [`ClusterState::clock_ms`], the latest entry time applied; they can only end an ODOWN
//!   or leave it as it was, never start a failover (the `FailoverStart` check decides).
//! - A removed node's vote is dropped with it; a voter nobody hears from stops re-affirming,
//!   so its vote expires like any other.
//! - A down vote that does not count is reported once (until its node votes again) with the
//!   event `+vote-ignored <master details> #node N expired: ...` (or `clock-skew: ...`), on
//!   the Sentinel port's Pub/Sub and in the log.
//!
//! Votes are compared across nodes' wall clocks, so the nodes' clocks must agree to well
//! under the lifetime (NTP); failover timeouts and the failover budget assume the same.
//!
//! Expiry is decided at apply time, so every node of a cluster must apply it alike. The
//! first builds (command format 1) counted a vote however old and accepted a `FailoverStart`
//! on such votes; every build that reads format 2 expires them. The state machine therefore
//! expires votes only once the committed cluster version is at least [`VOTE_EXPIRY_VERSION`]
//! (2), and before that counts every down vote, keeps no log clock and evaluates `SET` at the
//! newest observation's time, as those builds did ([`ClusterState::votes_expire`]). The entry
//! that raises the version starts the log clock at the newest observation in the state. A
//! cluster that ran any format 2 or later build is past that version for good, so an upgrade
//! from such a build keeps expiry on throughout. The leader's executor checks freshness before
//! proposing at every version: not proposing changes no node's state.

mod command;
mod event;
pub mod limits;
mod spec;
mod state;

pub use command::{
    Command, DecodeError, FailoverReason, FenceKind, MasterSpec, MemberInfo, ObserveReason,
    ReconfStage, BASE_VERSION, BATCH_VERSION, MAX_BATCH, SUPPORTED_VERSION, VOTE_EXPIRY_VERSION,
};
pub use event::{master_details, replica_details, Event};
pub(crate) use spec::check_spec;
pub use spec::{SpecField, SpecProblem, MAX_SCRIPT_LEN};
pub use state::{
    Applied, ClusterState, FailoverRecord, FailoverRequestState, FailoverState, MasterState,
    Member, Observation, Outcome, ReconfState, RejectKind, Rejection, SnapshotError, StaleVote,
    SyncHoldRecord, HISTORY_LIMIT, MAX_SYNC_HOLDS, VOTE_TTL_FLOOR_MS,
};

#[cfg(test)]
mod tests;
