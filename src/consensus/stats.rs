//! Counters about proposals, kept by the handle and exported as Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Outcome label of a proposal.
pub type ResultLabel = Vec<(&'static str, &'static str)>;

/// Proposal counts by outcome and the time from proposing to applied.
#[derive(Debug)]
pub struct ProposalStats {
    /// `raft_sentinel_proposals_total{result}`.
    pub total: Family<ResultLabel, Counter>,
    /// `raft_sentinel_proposal_duration_seconds` of successful proposals.
    pub duration: Histogram,
}

impl Default for ProposalStats {
    fn default() -> Self {
        ProposalStats {
            total: Family::default(),
            // 0.5 ms .. ~8 s: covers an fsync on a fast disk up to a slow election.
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 15,
            )),
        }
    }
}

impl ProposalStats {
    /// Records one finished proposal.
    pub fn record(&self, result: &'static str, seconds: Option<f64>) {
        self.total.get_or_create(&vec![("result", result)]).inc();
        if let Some(s) = seconds {
            self.duration.observe(s);
        }
    }
}
