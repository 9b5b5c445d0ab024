//! The lease: how a node knows it may vouch for its state (serve master addresses) and a
//! leader that it may act on Redis.
//!
//! Every node, leader or follower, confirms its leader with a quorum through ReadIndex
//! rounds, well before its lease runs out, and vouches only until `lease` after the start of
//! the last round that completed and whose read index it has applied. Messages from a leader
//! alone do not count: a deposed leader in a minority still sends heartbeats to its
//! followers. The lease is shorter than the time the voters of that quorum refuse to elect
//! anyone else (see `NodeConfig::lease`), so no other leader can exist meanwhile.
//!
//! [`LeaderContact`] is the node task's side (it decides when a round starts and records
//! what comes back); [`ContactReader`] is what every handle reads. Time is passed in, so the
//! rules are tested without a cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// At most this many lease rounds (ReadIndex) in flight per node.
const MAX_LEASE_ROUNDS: usize = 8;

/// The node task's bookkeeping of its lease rounds.
#[derive(Debug)]
pub(super) struct LeaderContact {
    /// Start of the last confirmed round whose index is applied, in ms since `epoch_start`
    /// (0: none valid). Shared with every [`ContactReader`].
    at: Arc<AtomicU64>,
    epoch_start: Instant,
    lease: Duration,
    /// Rounds in flight: (request id, started at in ms). Several overlap, so one slow round
    /// does not let the lease lapse.
    in_flight: Vec<(u64, u64)>,
    /// Confirmed rounds waiting to be applied: (read index, started at in ms).
    confirmed: Vec<(u64, u64)>,
}

/// Reads the lease [`LeaderContact`] keeps; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct ContactReader {
    at: Arc<AtomicU64>,
    epoch_start: Instant,
    lease: Duration,
}

impl LeaderContact {
    /// No contact yet; times are counted from `epoch_start`.
    pub(super) fn new(epoch_start: Instant, lease: Duration) -> Self {
        LeaderContact {
            at: Arc::new(AtomicU64::new(0)),
            epoch_start,
            lease,
            in_flight: Vec::new(),
            confirmed: Vec::new(),
        }
    }

    /// What the handles read.
    pub(super) fn reader(&self) -> ContactReader {
        ContactReader {
            at: self.at.clone(),
            epoch_start: self.epoch_start,
            lease: self.lease,
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch_start).as_millis() as u64
    }

    /// On every tick of a node that applies: whether to start a round now (then call
    /// [`Self::started`] with its request id). Rounds renew the lease from a quarter of it
    /// on, a new one every quarter lease while none has answered: a round can be slow (a
    /// loaded machine) or get no answer at all (no leader, message lost, leader not yet
    /// committed in its term) without the lease lapsing. A round older than the lease is of
    /// no use any more and is forgotten.
    pub(super) fn tick(&mut self, now: Instant, leader_known: bool) -> bool {
        let lease = self.lease.as_millis() as u64;
        let now = self.ms(now);
        let last = self.at.load(Ordering::Relaxed);
        self.in_flight
            .retain(|(_, at)| now.saturating_sub(*at) <= lease);
        let step = (lease / 4).max(1);
        let renew = last == 0 || now.saturating_sub(last) >= step;
        let due = self
            .in_flight
            .iter()
            .all(|(_, at)| now.saturating_sub(*at) >= step);
        renew && due && self.in_flight.len() < MAX_LEASE_ROUNDS && leader_known
    }

    /// A round with this request id was started at `now`.
    pub(super) fn started(&mut self, id: u64, now: Instant) {
        let at = self.ms(now);
        self.in_flight.push((id, at));
    }

    /// A quorum confirmed the read state of request `id` at `index`; false if `id` is not a
    /// lease round (a client's read).
    pub(super) fn confirmed(&mut self, id: u64, index: u64) -> bool {
        let Some(pos) = self.in_flight.iter().position(|(sid, _)| *sid == id) else {
            return false;
        };
        let (_, at) = self.in_flight.swap_remove(pos);
        self.confirmed.push((index, at));
        true
    }

    /// Entries up to `applied` are applied: every round confirmed at or below it holds, and
    /// the latest start among them counts (never earlier than the contact already held).
    pub(super) fn applied(&mut self, applied: u64) {
        let latest = self
            .confirmed
            .iter()
            .filter(|(idx, _)| applied >= *idx)
            .map(|(_, at)| *at)
            .max();
        if let Some(at) = latest {
            self.confirmed.retain(|(idx, _)| applied < *idx);
            let prev = self.at.load(Ordering::Relaxed);
            self.at.store(at.max(prev).max(1), Ordering::Relaxed);
        }
    }

    /// Leadership is being transferred away: the transferee campaigns without waiting for
    /// any lease, so stop vouching now.
    pub(super) fn transferring(&mut self) {
        self.at.store(0, Ordering::Relaxed);
    }

    /// A new term or a new leader (confirmations of an earlier one say nothing about it; it
    /// may hold entries this node has not applied), or the node stopped applying: nothing
    /// holds any more.
    pub(super) fn reset(&mut self) {
        self.in_flight.clear();
        self.confirmed.clear();
        self.at.store(0, Ordering::Relaxed);
    }
}

impl ContactReader {
    /// Time since the last quorum confirmation of the leader started; `None` if none holds.
    pub(super) fn since(&self) -> Option<Duration> {
        let at = self.at.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let now = self.epoch_start.elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(at)))
    }

    /// The lease holds: the last confirmation started less than a lease ago.
    pub(super) fn holds(&self) -> bool {
        self.since().is_some_and(|d| d < self.lease)
    }

    /// The lease.
    pub(super) fn lease(&self) -> Duration {
        self.lease
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(800);
    const QUARTER: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_holds_from_its_start_once_its_index_is_applied() {
        let t0 = Instant::now();
        let mut c = LeaderContact::new(t0, LEASE);
        let r = c.reader();
        assert!(!c.tick(t0 + ms(10), false), "no round without a leader");
        assert!(c.tick(t0 + ms(10), true));
        c.started(1, t0 + ms(10));
        assert!(!c.confirmed(99, 5), "a client's read is not a lease round");
        assert!(c.confirmed(1, 5));
        tokio::time::advance(ms(100)).await;
        c.applied(4);
        assert!(!r.holds(), "confirmed but its index not applied yet");
        c.applied(5);
        assert!(r.holds());
        // Counted from the round's start (10 ms), not from when it was confirmed.
        assert_eq!(r.since(), Some(ms(90)));
        tokio::time::advance(LEASE - ms(91)).await;
        assert!(r.holds());
        tokio::time::advance(ms(1)).await;
        assert!(!r.holds(), "lapses a lease after the round started");
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_rounds_overlap_every_quarter_lease() {
        let t0 = Instant::now();
        let mut c = LeaderContact::new(t0, LEASE);
        let mut t = t0 + ms(1);
        let mut started = 0;
        for id in 1..=40 {
            if c.tick(t, true) {
                c.started(id, t);
                started += 1;
            }
            t += ms(50);
        }
        // None answers: one new round each quarter lease; those older than the lease are
        // forgotten, so about a lease's worth stay in flight.
        assert_eq!(started, 10);
        assert!(c.in_flight.len() <= 5);
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_waits_for_a_quarter_lease_after_the_contact() {
        let t0 = Instant::now();
        let mut c = LeaderContact::new(t0, LEASE);
        assert!(c.tick(t0 + ms(1), true));
        c.started(1, t0 + ms(1));
        c.confirmed(1, 1);
        c.applied(1);
        assert!(!c.tick(t0 + ms(1) + QUARTER - ms(1), true));
        assert!(c.tick(t0 + ms(1) + QUARTER, true));
    }

    #[tokio::test(start_paused = true)]
    async fn the_latest_start_counts_and_contact_never_goes_back() {
        let t0 = Instant::now();
        let mut c = LeaderContact::new(t0, LEASE);
        let r = c.reader();
        c.started(1, t0 + ms(100));
        c.started(2, t0 + ms(300));
        c.confirmed(2, 7);
        c.confirmed(1, 6);
        tokio::time::advance(ms(400)).await;
        c.applied(7);
        assert_eq!(
            r.since(),
            Some(ms(100)),
            "the round started at 300 ms counts"
        );
        // An older round confirmed later does not move the contact back.
        c.started(3, t0 + ms(200));
        c.confirmed(3, 7);
        c.applied(7);
        assert_eq!(r.since(), Some(ms(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn transfer_and_reset_end_the_contact() {
        let t0 = Instant::now();
        let mut c = LeaderContact::new(t0, LEASE);
        let r = c.reader();
        c.started(1, t0);
        c.confirmed(1, 1);
        c.applied(1);
        // A start at 0 ms is kept as 1 ms: 0 means no contact.
        assert_eq!(r.since(), Some(Duration::ZERO));
        assert!(r.holds());
        c.transferring();
        assert!(!r.holds());
        c.started(2, t0 + ms(5));
        c.confirmed(2, 2);
        c.started(3, t0 + ms(6));
        c.reset();
        c.applied(2);
        assert!(!r.holds(), "a reset forgets confirmed rounds");
        assert!(!c.confirmed(3, 3), "and those in flight");
        assert!(c.tick(t0 + ms(7), true), "a new round right away");
    }
}
