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

use crate::clock::wall_ms;
use crate::tuning::{Knob, Tuning};

/// How often the watcher beats (more often when the trigger is short, so one late beat of a
/// busy machine is not taken for a stall).
pub(crate) const BEAT: Duration = Duration::from_millis(100);

/// Shared by the watcher (which beats) and the probes (which ask before judging).
///
/// A gap longer than `TILT-TRIGGER` between beats (or a wall-clock jump that large beyond the
/// monotonic time that passed) means the process stalled or the clock moved under it; probe
/// results then stay void for `TILT-PERIOD` (default 10 s: long enough for every probe to get
/// fresh replies on a healthy instance). Both are read from [`Tuning`] at every check.
#[derive(Debug)]
pub(crate) struct Tilt {
    inner: Mutex<Inner>,
    tuning: Arc<Tuning>,
}

#[derive(Debug)]
struct Inner {
    last_beat: Instant,
    last_wall_ms: u64,
    /// In TILT since (monotonic, and wall ms for INFO), until.
    since: Option<Instant>,
    until: Option<Instant>,
    /// Stalls and clock jumps detected since start: each is one `+tilt`, as in Sentinel
    /// (one during a TILT re-arms it and is published again).
    entered: u64,
}

impl Tilt {
    pub(crate) fn new(tuning: Arc<Tuning>) -> Arc<Tilt> {
        Arc::new(Tilt {
            inner: Mutex::new(Inner {
                last_beat: Instant::now(),
                last_wall_ms: wall_ms(),
                since: None,
                until: None,
                entered: 0,
            }),
            tuning,
        })
    }

    /// How long the watcher sleeps between beats.
    pub(crate) fn beat_period(&self) -> Duration {
        (self.tuning.get(Knob::TiltTrigger) / 4).clamp(Duration::from_millis(10), BEAT)
    }

    /// The watcher's periodic beat: detects a stall or a clock jump since the last one.
    pub(crate) fn beat(&self) {
        let now = Instant::now();
        let wall = wall_ms();
        let mut g = self.inner.lock();
        let mono_ms = now.saturating_duration_since(g.last_beat).as_millis() as i64;
        let wall_delta = wall as i64 - g.last_wall_ms as i64;
        let trigger = self.tuning.ms(Knob::TiltTrigger) as i64;
        let period = self.tuning.get(Knob::TiltPeriod);
        if mono_ms > trigger {
            enter(
                &mut g,
                now,
                period,
                &format!("the process did not run for {mono_ms} ms"),
            );
        } else if wall_delta < -trigger || wall_delta - mono_ms > trigger {
            enter(
                &mut g,
                now,
                period,
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
        if gap > self.tuning.get(Knob::TiltTrigger) {
            enter(
                &mut g,
                now,
                self.tuning.get(Knob::TiltPeriod),
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

    /// How many times this node entered (or re-entered) TILT since it started.
    pub(crate) fn entered(&self) -> u64 {
        self.inner.lock().entered
    }
}

fn enter(g: &mut Inner, now: Instant, period: Duration, why: &str) {
    g.entered += 1;
    // A TILT whose period is over is over, even before the next beat clears it: this is a
    // new one, with its own start.
    if g.since.is_none() || g.until.is_some_and(|u| now >= u) {
        warn!(
            reason = why,
            period_ms = period.as_millis() as u64,
            "+tilt: probe results are void for a while"
        );
        g.since = Some(now);
    } else {
        warn!(
            reason = why,
            period_ms = period.as_millis() as u64,
            "+tilt again: the period starts over"
        );
    }
    // A stall that lasts past the beat check is counted once: the next beat is close.
    g.last_beat = now;
    g.until = Some(now + period);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tuning::{DEFAULT_TILT_PERIOD_MS, DEFAULT_TILT_TRIGGER_MS};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Beats through `d`, one beat period at a time.
    async fn beat_for(t: &Tilt, d: Duration) {
        let step = t.beat_period();
        for _ in 0..(d.as_millis() / step.as_millis() + 1) {
            tokio::time::advance(step).await;
            t.beat();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_between_beats_enters_tilt_for_the_period() {
        let t = Tilt::new(Arc::default());
        t.beat();
        assert!(!t.active());
        tokio::time::advance(ms(DEFAULT_TILT_TRIGGER_MS + 1)).await;
        assert!(t.active(), "a stall longer than the trigger");
        assert!(t.since().is_some());
        beat_for(&t, ms(DEFAULT_TILT_PERIOD_MS)).await;
        assert!(!t.active(), "the period is over");
        assert!(t.since().is_none());
        assert_eq!(t.entered(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn every_stall_counts_and_a_new_tilt_gets_a_new_start() {
        let tuning = Arc::new(Tuning::default());
        tuning.set(&[(Knob::TiltTrigger, 1000), (Knob::TiltPeriod, 2000)]);
        let t = Tilt::new(tuning);
        tokio::time::advance(ms(1500)).await;
        t.beat();
        let first = t.since().expect("in TILT");
        assert_eq!(t.entered(), 1);
        // A second stall within the TILT re-arms it: counted, same start.
        tokio::time::advance(ms(1500)).await;
        t.beat();
        assert_eq!((t.since(), t.entered()), (Some(first), 2));
        // A stall right after the period ended, before any beat cleared it: a new TILT.
        tokio::time::advance(ms(2001)).await;
        assert!(t.active());
        let second = t.since().expect("in TILT again");
        assert!(second > first);
        assert_eq!(t.entered(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_and_period_follow_the_settings() {
        let tuning = Arc::new(Tuning::default());
        tuning.set(&[(Knob::TiltTrigger, 3000), (Knob::TiltPeriod, 500)]);
        let t = Tilt::new(tuning.clone());
        t.beat();
        tokio::time::advance(ms(2000)).await;
        t.beat();
        assert!(!t.active(), "2 s is under a 3 s trigger");
        tokio::time::advance(ms(3001)).await;
        assert!(t.active());
        beat_for(&t, ms(500)).await;
        assert!(!t.active(), "a 500 ms period is over");
        // A short trigger beats more often, so a busy but running process stays out.
        tuning.set(&[(Knob::TiltTrigger, 200)]);
        assert_eq!(t.beat_period(), ms(50));
        beat_for(&t, ms(1000)).await;
        assert!(!t.active());
        tokio::time::advance(ms(201)).await;
        assert!(t.active());
    }
}
