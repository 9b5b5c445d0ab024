//! The replicated state machine: pure, deterministic, no tokio, no network, no Raft types.
//!
//! [`ClusterState::apply`] takes a committed [`Command`] and returns the [`Event`]s it caused.
//! Every node applies the same log and therefore holds the same state and emits the same events.

mod command;
mod event;
mod state;

pub use command::{
    Command, DecodeError, FailoverReason, FenceKind, MasterSpec, MemberInfo, ObserveReason,
    ReconfStage,
};
pub use event::{master_details, replica_details, Event};
pub use state::{
    Applied, ClusterState, FailoverRecord, FailoverRequestState, FailoverState, MasterState,
    Member, Observation, Outcome, ReconfState, RejectKind, Rejection, SnapshotError, HISTORY_LIMIT,
};

#[cfg(test)]
mod tests;
