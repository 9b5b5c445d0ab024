//! Node-local timing knobs that `SENTINEL DEBUG` lists and sets at run time: the probes'
//! PING and INFO periods, how often a down vote is re-affirmed, and TILT's trigger and
//! period. Each node has its own (one per [`crate::app::Node`], so in-process clusters do not
//! share them); none is replicated and all go back to their defaults on restart.
//!
//! Readers take a value when they need it; a change also bumps a version that probes watch,
//! so a probe sleeping out a long period picks up a shorter one at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Default longest PING period (Sentinel's `PING-PERIOD`).
pub const DEFAULT_PING_PERIOD_MS: u64 = 1_000;
/// Default INFO period while nothing is wrong (Sentinel's is 10 s; this project's 1 s).
pub const DEFAULT_INFO_PERIOD_MS: u64 = 1_000;
/// Default longest re-affirmation period of a down vote (Sentinel asks its peers every 1 s).
pub const DEFAULT_ASK_PERIOD_MS: u64 = 1_000;
/// Default stall that enters TILT.
pub const DEFAULT_TILT_TRIGGER_MS: u64 = 1_000;
/// Default time probe results stay void after a stall.
pub const DEFAULT_TILT_PERIOD_MS: u64 = 10_000;

/// One knob of [`Tuning`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// `PING-PERIOD`: the longest PING period of any instance.
    PingPeriod,
    /// `INFO-PERIOD`: the INFO period while an instance's master is healthy.
    InfoPeriod,
    /// `ASK-PERIOD`: the longest period between re-affirmations of this node's down vote.
    AskPeriod,
    /// `TILT-TRIGGER`: a stall of this process (or clock jump) longer than this enters TILT.
    TiltTrigger,
    /// `TILT-PERIOD`: how long probe results stay void after the last stall.
    TiltPeriod,
}

/// The knobs, in milliseconds.
#[derive(Debug)]
pub struct Tuning {
    ping_period_ms: AtomicU64,
    info_period_ms: AtomicU64,
    ask_period_ms: AtomicU64,
    tilt_trigger_ms: AtomicU64,
    tilt_period_ms: AtomicU64,
    version: watch::Sender<u64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            ping_period_ms: AtomicU64::new(DEFAULT_PING_PERIOD_MS),
            info_period_ms: AtomicU64::new(DEFAULT_INFO_PERIOD_MS),
            ask_period_ms: AtomicU64::new(DEFAULT_ASK_PERIOD_MS),
            tilt_trigger_ms: AtomicU64::new(DEFAULT_TILT_TRIGGER_MS),
            tilt_period_ms: AtomicU64::new(DEFAULT_TILT_PERIOD_MS),
            version: watch::channel(0).0,
        }
    }
}

impl Tuning {
    fn cell(&self, k: Knob) -> &AtomicU64 {
        match k {
            Knob::PingPeriod => &self.ping_period_ms,
            Knob::InfoPeriod => &self.info_period_ms,
            Knob::AskPeriod => &self.ask_period_ms,
            Knob::TiltTrigger => &self.tilt_trigger_ms,
            Knob::TiltPeriod => &self.tilt_period_ms,
        }
    }

    /// The knob's value in milliseconds.
    pub fn ms(&self, k: Knob) -> u64 {
        self.cell(k).load(Ordering::Relaxed)
    }

    /// The knob's value.
    pub fn get(&self, k: Knob) -> Duration {
        Duration::from_millis(self.ms(k))
    }

    /// Sets knobs (values of 0 are raised to 1 ms) and wakes the watchers once.
    pub fn set(&self, values: &[(Knob, u64)]) {
        for (k, v) in values {
            self.cell(*k).store((*v).max(1), Ordering::Relaxed);
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Changes whenever a knob is set.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_changes_values_and_wakes_watchers() {
        let t = Tuning::default();
        let mut rx = t.subscribe();
        assert_eq!(t.ms(Knob::TiltPeriod), DEFAULT_TILT_PERIOD_MS);
        t.set(&[(Knob::PingPeriod, 50), (Knob::TiltPeriod, 0)]);
        assert_eq!(t.get(Knob::PingPeriod), Duration::from_millis(50));
        assert_eq!(t.ms(Knob::TiltPeriod), 1);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        assert!(!rx.has_changed().unwrap());
    }
}
