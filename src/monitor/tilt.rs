//! TILT, after Sentinel's mode of the same name: when this process stalled (the event loop
//! did not run for a while, e.g. SIGSTOP, a VM pause, swapping) or the wall clock jumped, the
//! silence its probes measured is its own, not the instances'. For a recovery period the
//! probes' results are void: no instance turns subjectively down and no down vote is
//! proposed (votes that an instance is up still are).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::consensus::wall_ms;

/// How often the watcher beats.
pub(crate) const BEAT: Duration = Duration::from_millis(100);
/// A gap this long between beats (or a wall-clock jump this large beyond the monotonic time
/// that passed) means the process stalled or the clock moved under it.
pub(crate) const TRIGGER: Duration = Duration::from_millis(1000);
/// How long probe results stay void after the last stall: long enough for every probe to
/// get fresh replies on a healthy instance.
pub(crate) const PERIOD: Duration = Duration::from_secs(10);

/// Shared by the watcher (which beats) and the probes (which ask before judging).
#[derive(Debug)]
pub(crate) struct Tilt {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    last_beat: Instant,
    last_wall_ms: u64,
    /// In TILT since (monotonic, and wall ms for INFO), until.
    since: Option<Instant>,
    until: Option<Instant>,
}

impl Tilt {
    pub(crate) fn new() -> Arc<Tilt> {
        Arc::new(Tilt {
            inner: Mutex::new(Inner {
                last_beat: Instant::now(),
                last_wall_ms: wall_ms(),
                since: None,
                until: None,
            }),
        })
    }

    /// The watcher's periodic beat: detects a stall or a clock jump since the last one.
    pub(crate) fn beat(&self) {
        let now = Instant::now();
        let wall = wall_ms();
        let mut g = self.inner.lock();
        let mono_ms = now.saturating_duration_since(g.last_beat).as_millis() as i64;
        let wall_delta = wall as i64 - g.last_wall_ms as i64;
        let trigger = TRIGGER.as_millis() as i64;
        if mono_ms > trigger {
            enter(
                &mut g,
                now,
                &format!("the process did not run for {mono_ms} ms"),
            );
        } else if wall_delta < -trigger || wall_delta - mono_ms > trigger {
            enter(
                &mut g,
                now,
                &format!("the wall clock moved {wall_delta} ms in {mono_ms} ms"),
            );
        }
        g.last_beat = now;
        g.last_wall_ms = wall;
        if g.until.is_some_and(|u| now >= u) {
            info!("-tilt: probe results count again");
            g.since = None;
            g.until = None;
        }
    }

    /// Whether probe results are void now. Also catches a stall the watcher has not beaten
    /// since (whichever task runs first after a stall must not judge from it).
    pub(crate) fn active(&self) -> bool {
        let now = Instant::now();
        let mut g = self.inner.lock();
        let gap = now.saturating_duration_since(g.last_beat);
        if gap > TRIGGER {
            enter(
                &mut g,
                now,
                &format!("the process did not run for {} ms", gap.as_millis()),
            );
        }
        g.until.is_some_and(|u| now < u)
    }

    /// Since when this node is in TILT (None when it is not).
    pub(crate) fn since(&self) -> Option<Instant> {
        let g = self.inner.lock();
        g.since
            .filter(|_| g.until.is_some_and(|u| Instant::now() < u))
    }
}

fn enter(g: &mut Inner, now: Instant, why: &str) {
    if g.since.is_none() {
        warn!(
            reason = why,
            period_s = PERIOD.as_secs(),
            "+tilt: probe results are void for a while"
        );
        g.since = Some(now);
    }
    // A stall that lasts past the beat check is counted once: the next beat is close.
    g.last_beat = now;
    g.until = Some(now + PERIOD);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_gap_between_beats_enters_tilt_for_the_period() {
        let t = Tilt::new();
        t.beat();
        assert!(!t.active());
        tokio::time::advance(TRIGGER + Duration::from_millis(1)).await;
        assert!(t.active(), "a stall longer than the trigger");
        assert!(t.since().is_some());
        for _ in 0..(PERIOD.as_millis() / BEAT.as_millis() + 1) {
            tokio::time::advance(BEAT).await;
            t.beat();
        }
        assert!(!t.active(), "the period is over");
        assert!(t.since().is_none());
    }
}
