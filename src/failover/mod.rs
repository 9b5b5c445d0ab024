//! Failover: the leader-only executor and the operator's way to ask for a failover.
//!
//! - [`spawn`] runs on every node; it acts only while this node is the Raft leader and in
//!   contact with a majority. Every decision is committed before anything is sent to Redis:
//!   `FailoverStart` (new epoch) before the promotion, `FailoverDone` only after `ROLE`
//!   confirms it, `Reconf` before each replica is repointed. It also fences instances that
//!   claim to be master without being the committed one.
//! - [`request`] proposes a `FailoverRequest` from any node and waits for the leader's
//!   answer (the new epoch, or why not). `SENTINEL FAILOVER` and the gRPC API use it.
//! - [`select`]: the pure choice of the replica to promote.

mod actions;
mod executor;
mod reconf;
pub mod select;

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

pub use executor::spawn;

use crate::clock::wall_ms;
use crate::consensus::{ProposeError, RaftHandle};
use crate::fsm::{ClusterState, Command, FailoverReason, RejectKind};
use crate::model::{Addr, Epoch};

/// Why a requested failover did not start. `Display` is Sentinel's exact text where
/// Sentinel has one; [`FailoverError::resp_error`] gives the whole RESP error line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailoverError {
    /// The master is not monitored.
    #[error("No such master with that name")]
    NoSuchMaster,
    /// A failover (or request) is already running for this master.
    #[error("INPROG Failover already in progress")]
    InProgress,
    /// The leader found no replica it may promote.
    #[error("NOGOODSLAVE No suitable replica to promote")]
    NoGoodSlave {
        /// The leader's explanation (each replica and why it was refused).
        reason: String,
    },
    /// The leader refused for another reason (e.g. a switchover of a master that is down).
    #[error("failover aborted: {0}")]
    Aborted(String),
    /// The request itself is invalid (e.g. the target is already the master).
    #[error("{0}")]
    Invalid(String),
    /// The request was committed but the leader did not answer in time.
    #[error("no answer from the leader within {0:?}; the failover may still happen")]
    Timeout(Duration),
    /// The request could not be committed (no leader, no quorum, shutting down).
    #[error("{0}")]
    Propose(ProposeError),
}

impl FailoverError {
    /// The error line a Redis-protocol server should send (without the leading `-`):
    /// errors with their own code keep it, the others get `ERR`.
    pub fn resp_error(&self) -> String {
        match self {
            FailoverError::InProgress | FailoverError::NoGoodSlave { .. } => self.to_string(),
            other => format!("ERR {other}"),
        }
    }
}

/// Asks the leader to fail `master` over (`Forced`: Sentinel's `SENTINEL FAILOVER`;
/// `Switchover`: zero-loss handover with Redis `FAILOVER TO`), optionally to `target`.
/// Works on any node. Returns the epoch of the failover once the leader has started it
/// (not when it completes); waits at most `timeout` in all.
pub async fn request(
    raft: &RaftHandle,
    master: &str,
    reason: FailoverReason,
    target: Option<Addr>,
    timeout: Duration,
) -> Result<Epoch, FailoverError> {
    if reason == FailoverReason::Odown {
        return Err(FailoverError::Invalid(
            "only forced failovers and switchovers can be requested".into(),
        ));
    }
    let deadline = Instant::now() + timeout;
    if !raft.state().masters.contains_key(master) {
        return Err(FailoverError::NoSuchMaster);
    }
    // Subscribe before proposing: the answer may be applied right after the request.
    let mut events = raft.subscribe_events();
    let epoch_before = raft.state().current_epoch;
    let at_ms = wall_ms();
    let cmd = Command::FailoverRequest {
        master: master.to_string(),
        reason,
        target,
        at_ms,
    };
    // Like the other operator commands, wait for a leader and retry inside the node while
    // leadership moves; a request is not idempotent, so after an attempt with an unknown
    // outcome the committed state says whether it went through before anything is resent.
    let leader_wait = raft.leader_wait();
    let mut unknown = false;
    let index = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if unknown {
            match settled_request(raft, master, reason, at_ms, epoch_before, left).await {
                Settled::Pending(index) => break index,
                Settled::Started(epoch) => return Ok(epoch),
                Settled::NotThere => {}
                Settled::Unknown => return Err(FailoverError::Timeout(timeout)),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = raft.wait_for_leader(leader_wait.min(left)).await {
            return Err(FailoverError::Propose(e));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match raft.propose_with_timeout(cmd.clone(), left).await {
            Ok(o) => break o.count,
            Err(ProposeError::Rejected(r)) => {
                return Err(match r.kind {
                    RejectKind::NotFound => FailoverError::NoSuchMaster,
                    _ if r.message.starts_with("INPROG") => FailoverError::InProgress,
                    _ => FailoverError::Invalid(r.message),
                })
            }
            Err(ProposeError::Timeout(_)) if !unknown => unknown = true,
            Err(ProposeError::Timeout(_)) => return Err(FailoverError::Timeout(timeout)),
            Err(ProposeError::LeaderChanged) => unknown = true,
            Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => {}
            Err(e) => return Err(FailoverError::Propose(e)),
        }
        tokio::time::sleep((raft.election_timeout() / 20).max(Duration::from_millis(5))).await;
    };
    let mut tracker = AnswerTracker::new(index);
    let mut state_rx = raft.watch_state();
    loop {
        let state = state_rx.borrow_and_update().clone();
        if let Some(answer) = tracker.resolve(&state, master) {
            return answer;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) if ev.event.master.as_deref() == Some(master) => {
                    tracker.on_event(ev.index, &ev.event.kind, &ev.event.payload)
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => tracker.lagged = true,
                Err(RecvError::Closed) => return Err(FailoverError::Propose(ProposeError::Shutdown)),
            },
            r = state_rx.changed() => if r.is_err() {
                return Err(FailoverError::Propose(ProposeError::Shutdown));
            },
            _ = tokio::time::sleep_until(deadline) => return Err(FailoverError::Timeout(timeout)),
        }
    }
}

/// What the committed state says about a request whose proposal had an unknown outcome.
enum Settled {
    /// It is committed and waits for the leader (its entry index).
    Pending(u64),
    /// It is committed and a failover it asked for started (that epoch).
    Started(Epoch),
    /// It was lost with the old leader: propose it again.
    NotThere,
    /// No leader could confirm the state in time.
    Unknown,
}

/// After a linearizable read (every entry of earlier terms is then committed or gone for
/// good), finds this request by its timestamp, or a failover of its kind started since.
async fn settled_request(
    raft: &RaftHandle,
    master: &str,
    reason: FailoverReason,
    at_ms: u64,
    epoch_before: Epoch,
    limit: Duration,
) -> Settled {
    let deadline = Instant::now() + limit;
    let index = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Settled::Unknown;
        }
        if raft.wait_for_leader(left).await.is_err() {
            return Settled::Unknown;
        }
        match raft.read_index(left).await {
            Ok(i) => break i,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut rx = raft.watch_state();
    let applied = tokio::time::timeout_at(deadline, rx.wait_for(|s| s.applied_index >= index));
    let state = match applied.await {
        Ok(Ok(s)) => s.clone(),
        _ => return Settled::Unknown,
    };
    let Some(m) = state.masters.get(master) else {
        return Settled::NotThere;
    };
    if let Some(r) = &m.failover_request {
        if r.at_ms == at_ms && r.reason == reason {
            return Settled::Pending(r.index);
        }
    }
    let started = state
        .history
        .iter()
        .rev()
        .find(|r| r.master == master && r.epoch > epoch_before && r.reason == reason);
    match started {
        Some(r) => Settled::Started(r.epoch),
        None => Settled::NotThere,
    }
}

/// Follows the events after the request to find which entry answered it.
///
/// A request is answered by the first `FailoverStart` not caused by ODOWN (it clears the
/// request and starts the failover) or by an epoch-0 `FailoverAbort` (no candidate). A
/// `FailoverRequest` is refused while a failover runs, so every failover started after it
/// shows up here with its `+try-failover`.
struct AnswerTracker {
    index: u64,
    /// Events of entries after the request, per entry: (index, kind, payload).
    seen: Vec<(u64, String, String)>,
    lagged: bool,
}

impl AnswerTracker {
    fn new(index: u64) -> Self {
        AnswerTracker {
            index,
            seen: Vec::new(),
            lagged: false,
        }
    }

    fn on_event(&mut self, index: u64, kind: &str, payload: &str) {
        if index <= self.index {
            return;
        }
        let ours = match kind {
            "+new-epoch" | "+try-failover" | "+promoted-slave" | "-monitor" | "+reset-master" => {
                true
            }
            k => k.starts_with("-failover-abort"),
        };
        if ours {
            self.seen
                .push((index, kind.to_string(), payload.to_string()));
        }
    }

    fn resolve(&self, state: &ClusterState, master: &str) -> Option<Result<Epoch, FailoverError>> {
        let Some(m) = state.masters.get(master) else {
            return Some(Err(FailoverError::NoSuchMaster));
        };
        if m.failover_request
            .as_ref()
            .is_some_and(|r| r.index == self.index)
        {
            return None;
        }
        // The request is gone: find the entry that took it, in log order.
        let mut running = false;
        let mut epoch = None;
        for (_, kind, payload) in self
            .seen
            .iter()
            .filter(|(i, _, _)| *i <= state.applied_index)
        {
            match kind.as_str() {
                "+new-epoch" => epoch = payload.parse::<Epoch>().ok(),
                "+try-failover" => {
                    let e = epoch?;
                    let by_request = state
                        .history
                        .iter()
                        .rev()
                        .find(|r| r.master == master && r.epoch == e)
                        .is_some_and(|r| r.reason != FailoverReason::Odown);
                    if by_request {
                        return Some(Ok(e));
                    }
                    running = true;
                }
                "+promoted-slave" => running = false,
                "-monitor" => return Some(Err(FailoverError::NoSuchMaster)),
                "+reset-master" => {
                    return Some(Err(FailoverError::Aborted("the master was reset".into())))
                }
                k if k.starts_with("-failover-abort") => {
                    if running {
                        running = false;
                        continue;
                    }
                    // Epoch-0 abort: the leader's answer. Its reason is in the history.
                    let why = state
                        .history
                        .iter()
                        .rev()
                        .find(|r| r.master == master && r.candidate.is_none())
                        .and_then(|r| r.outcome.strip_prefix("aborted: ").map(str::to_string))
                        .unwrap_or_else(|| k.trim_start_matches("-failover-abort-").to_string());
                    return Some(Err(abort_error(why)));
                }
                _ => {}
            }
        }
        if self.lagged {
            // Missed events: fall back to what the state shows.
            if let Some(f) = &m.failover {
                if f.reason != FailoverReason::Odown {
                    return Some(Ok(f.epoch));
                }
            }
            return Some(Err(FailoverError::Aborted(
                "the request was answered but its outcome was missed; check the failover history"
                    .into(),
            )));
        }
        // The events of the answering entry are broadcast before its state is published,
        // so this is only reached for an answer still in flight to this subscriber.
        None
    }
}

fn abort_error(why: String) -> FailoverError {
    match why.strip_prefix("no-good-slave") {
        Some(rest) => FailoverError::NoGoodSlave {
            reason: rest.trim_start_matches(':').trim().to_string(),
        },
        None => FailoverError::Aborted(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{MasterSpec, Outcome};

    fn addr(port: u16) -> Addr {
        Addr::new("127.0.0.1", port).unwrap()
    }

    fn base() -> (ClusterState, u64) {
        let mut s = ClusterState::default();
        let spec = MasterSpec {
            down_after_ms: 1000,
            failover_timeout_ms: 10_000,
            ..MasterSpec::new("m", addr(6379), 2)
        };
        s.apply(1, &Command::Monitor { spec }).result.unwrap();
        s.apply(
            2,
            &Command::Replicas {
                master: "m".into(),
                replicas: vec![addr(6380)],
            },
        )
        .result
        .unwrap();
        let r = s.apply(
            3,
            &Command::FailoverRequest {
                master: "m".into(),
                reason: FailoverReason::Forced,
                target: None,
                at_ms: 5,
            },
        );
        assert_eq!(r.result, Ok(Outcome { count: 3 }));
        (s, 3)
    }

    fn feed(t: &mut AnswerTracker, s: &mut ClusterState, index: u64, cmd: Command) {
        let applied = s.apply(index, &cmd);
        applied.result.unwrap();
        for e in applied.events {
            t.on_event(index, &e.kind, &e.payload);
        }
    }

    #[test]
    fn answered_by_failover_start() {
        let (mut s, idx) = base();
        let mut t = AnswerTracker::new(idx);
        assert_eq!(t.resolve(&s, "m"), None);
        feed(
            &mut t,
            &mut s,
            4,
            Command::FailoverStart {
                master: "m".into(),
                epoch: 1,
                candidate: addr(6380),
                reason: FailoverReason::Forced,
                leader: 1,
                at_ms: 6,
            },
        );
        assert_eq!(t.resolve(&s, "m"), Some(Ok(1)));
    }

    #[test]
    fn answered_by_no_good_slave_abort() {
        let (mut s, idx) = base();
        let mut t = AnswerTracker::new(idx);
        feed(
            &mut t,
            &mut s,
            4,
            Command::FailoverAbort {
                master: "m".into(),
                epoch: 0,
                why: "no-good-slave: 127.0.0.1:6380 replica-priority 0".into(),
                at_ms: 6,
            },
        );
        let r = t.resolve(&s, "m").unwrap().unwrap_err();
        assert_eq!(
            r,
            FailoverError::NoGoodSlave {
                reason: "127.0.0.1:6380 replica-priority 0".into()
            }
        );
        assert_eq!(r.to_string(), "NOGOODSLAVE No suitable replica to promote");
        assert_eq!(r.resp_error(), "NOGOODSLAVE No suitable replica to promote");
    }

    #[test]
    fn error_lines_match_sentinel() {
        assert_eq!(
            FailoverError::InProgress.resp_error(),
            "INPROG Failover already in progress"
        );
        assert_eq!(
            FailoverError::NoSuchMaster.resp_error(),
            "ERR No such master with that name"
        );
    }

    #[test]
    fn removed_master_answers_not_found() {
        let (mut s, idx) = base();
        let mut t = AnswerTracker::new(idx);
        feed(&mut t, &mut s, 4, Command::Remove { name: "m".into() });
        assert_eq!(t.resolve(&s, "m"), Some(Err(FailoverError::NoSuchMaster)));
    }
}
