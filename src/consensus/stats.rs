//! Counters about proposals, kept by the handle and exported as Prometheus metrics.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::mailbox::ProposeError;
use crate::fsm::Outcome;

/// Outcome label of a proposal.
pub type ResultLabel = Vec<(&'static str, &'static str)>;

/// Every value of the `result` label, so each series exists from startup.
pub const RESULTS: [&str; 8] = [
    "applied",
    "rejected",
    "not_leader",
    "timeout",
    "leader_changed",
    "invalid",
    "precondition",
    "shutdown",
];

/// Proposal counts by outcome and the time from proposing to applied.
#[derive(Debug)]
pub struct ProposalStats {
    /// `raft_sentinel_proposals_total{result}`.
    pub total: Family<ResultLabel, Counter>,
    /// `raft_sentinel_proposal_duration_seconds` of proposals that were applied (whether the
    /// state machine accepted or refused them: both went through the log).
    pub duration: Histogram,
}

impl Default for ProposalStats {
    fn default() -> Self {
        let total: Family<ResultLabel, Counter> = Family::default();
        for r in RESULTS {
            drop(total.get_or_create(&vec![("result", r)]));
        }
        ProposalStats {
            total,
            // 0.5 ms .. ~8 s: covers an fsync on a fast disk up to a slow election.
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 15,
            )),
        }
    }
}

impl ProposalStats {
    /// Records the outcome of one proposal that took `elapsed`.
    pub fn record_outcome(&self, res: &Result<Outcome, ProposeError>, elapsed: Duration) {
        let secs = Some(elapsed.as_secs_f64());
        match res {
            Ok(_) => self.record("applied", secs),
            Err(ProposeError::Rejected(_)) => self.record("rejected", secs),
            Err(ProposeError::NotLeader { .. }) => self.record("not_leader", None),
            Err(ProposeError::Timeout(_)) => self.record("timeout", None),
            Err(ProposeError::LeaderChanged) => self.record("leader_changed", None),
            Err(ProposeError::Invalid(_)) => self.record("invalid", None),
            Err(ProposeError::Precondition(_)) => self.record("precondition", None),
            Err(ProposeError::MembershipBusy) => self.record("membership_busy", None),
            Err(ProposeError::Shutdown) => self.record("shutdown", None),
        }
    }

    /// Records one finished proposal.
    pub fn record(&self, result: &'static str, seconds: Option<f64>) {
        self.total.get_or_create(&vec![("result", result)]).inc();
        if let Some(s) = seconds {
            self.duration.observe(s);
        }
    }
}
