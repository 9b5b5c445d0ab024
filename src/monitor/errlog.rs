//! Repeated probe errors, logged without flooding: the first error of each kind is logged,
//! repeats are only counted and summarised once per [`SUMMARY_PERIOD`]. An instance that
//! keeps failing the same way (a password that changed, an address nobody listens on) is
//! probed every ping period, and a line per probe and node hid everything else in the log.
//!
//! Pure bookkeeping: the probe passes the time and logs what this returns.

use std::time::Duration;

use tokio::time::Instant;

/// How often repeats of an error already logged are summarised with their count.
pub(crate) const SUMMARY_PERIOD: Duration = Duration::from_secs(60);
/// Distinct error messages remembered per instance (the oldest is forgotten beyond).
const MAX_KINDS: usize = 8;

/// Repeats of one error message counted since the last summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The error message.
    pub error: String,
    /// How many times it occurred again, unlogged.
    pub repeats: u64,
    /// Over which time (since the previous summary).
    pub over: Duration,
}

/// What to log for one error.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The error was not seen recently: log it.
    pub new: bool,
    /// Summaries due now (of this error and of others).
    pub summaries: Vec<Summary>,
}

struct Kind {
    /// The message with its numbers blanked (see [`kind_of`]).
    kind: String,
    /// The first message of this kind, as logged.
    error: String,
    repeats: u64,
    last: Instant,
}

/// Errors that differ only in their numbers are one kind: a timeout names the time it waited,
/// which varies from one probe to the next, and would otherwise be logged every time.
fn kind_of(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut in_number = false;
    for ch in error.chars() {
        if ch.is_ascii_digit() || (in_number && ch == '.') {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(ch);
        }
    }
    out
}

/// The error-logging state of one probe.
pub(crate) struct ErrorLog {
    period: Duration,
    kinds: Vec<Kind>,
    window_start: Instant,
    /// Errors since the last good reply.
    failing: bool,
    /// Something was logged during the current run of errors, so its end is worth a line.
    logged: bool,
}

impl ErrorLog {
    pub(crate) fn new(period: Duration, now: Instant) -> ErrorLog {
        ErrorLog {
            period,
            kinds: Vec::new(),
            window_start: now,
            failing: false,
            logged: false,
        }
    }

    /// Records one error at `now`.
    pub(crate) fn error(&mut self, error: &str, now: Instant) -> Verdict {
        let summaries = self.summaries_due(now);
        let kind = kind_of(error);
        let new = match self.kinds.iter_mut().find(|k| k.kind == kind) {
            Some(k) => {
                k.repeats += 1;
                k.last = now;
                false
            }
            None => {
                if self.kinds.len() >= MAX_KINDS {
                    if let Some(i) = (0..self.kinds.len()).min_by_key(|&i| self.kinds[i].last) {
                        self.kinds.swap_remove(i);
                    }
                }
                self.kinds.push(Kind {
                    kind,
                    error: error.to_string(),
                    repeats: 0,
                    last: now,
                });
                true
            }
        };
        self.failing = true;
        self.logged |= new || !summaries.is_empty();
        Verdict { new, summaries }
    }

    /// A good reply at `now`. Returns `None` when the end of the errors is not worth a line
    /// (none of them was logged: an instance flapping between a repeated error and a good
    /// reply gives one summary per period, not two lines per flap), else the repeats not
    /// summarised yet.
    pub(crate) fn recovered(&mut self, now: Instant) -> Option<Vec<Summary>> {
        if !std::mem::take(&mut self.failing) || !std::mem::take(&mut self.logged) {
            return None;
        }
        let over = now.saturating_duration_since(self.window_start);
        Some(self.take_repeats(over))
    }

    /// At the end of a period: the repeats counted in it, and the errors not seen in the
    /// whole period are forgotten (logged again if they come back).
    fn summaries_due(&mut self, now: Instant) -> Vec<Summary> {
        let over = now.saturating_duration_since(self.window_start);
        if over < self.period {
            return Vec::new();
        }
        let start = self.window_start;
        let out = self.take_repeats(over);
        self.kinds.retain(|k| k.last >= start);
        self.window_start = now;
        out
    }

    fn take_repeats(&mut self, over: Duration) -> Vec<Summary> {
        self.kinds
            .iter_mut()
            .filter(|k| k.repeats > 0)
            .map(|k| Summary {
                error: k.error.clone(),
                repeats: std::mem::take(&mut k.repeats),
                over,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(60);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_error_is_logged_and_repeats_are_summarised_once_a_period() {
        let t0 = Instant::now();
        let mut log = ErrorLog::new(P, t0);
        assert!(log.error("NOAUTH", t0).new);
        // Every 200 ms for a minute: nothing logged.
        for i in 1..300 {
            let v = log.error("NOAUTH", at(t0, i * 200));
            assert_eq!(v, Verdict::default(), "at {} ms", i * 200);
        }
        let v = log.error("NOAUTH", at(t0, 60_000));
        assert!(!v.new);
        assert_eq!(
            v.summaries,
            vec![Summary {
                error: "NOAUTH".into(),
                repeats: 299,
                over: P,
            }]
        );
        // The next summary counts from there.
        for i in 1..=10 {
            assert_eq!(
                log.error("NOAUTH", at(t0, 60_000 + i * 200)),
                Verdict::default()
            );
        }
        let v = log.error("NOAUTH", at(t0, 120_000));
        assert_eq!(v.summaries[0].repeats, 11);
    }

    #[test]
    fn alternating_errors_are_each_logged_once() {
        let t0 = Instant::now();
        let mut log = ErrorLog::new(P, t0);
        assert!(log.error("PING: NOAUTH", t0).new);
        assert!(log.error("INFO: NOAUTH", at(t0, 1)).new);
        for i in 1..100 {
            assert!(!log.error("PING: NOAUTH", at(t0, i * 200)).new);
            assert!(!log.error("INFO: NOAUTH", at(t0, i * 200 + 1)).new);
        }
        let v = log.error("PING: NOAUTH", at(t0, 60_000));
        assert_eq!(v.summaries.len(), 2, "{v:?}");
    }

    #[test]
    fn an_error_absent_for_a_whole_period_is_logged_again() {
        let t0 = Instant::now();
        let mut log = ErrorLog::new(P, t0);
        assert!(log.error("refused", t0).new);
        assert!(log.error("timeout", at(t0, 60_000)).new);
        // "refused" was not seen in the period 60 s..120 s.
        assert!(log.error("timeout", at(t0, 120_000)).summaries.is_empty());
        assert!(log.error("refused", at(t0, 120_100)).new);
    }

    #[test]
    fn recovery_is_reported_only_after_a_logged_error() {
        let t0 = Instant::now();
        let mut log = ErrorLog::new(P, t0);
        assert_eq!(log.recovered(t0), None, "nothing failed");
        assert!(log.error("NOAUTH", t0).new);
        log.error("NOAUTH", at(t0, 200));
        let r = log.recovered(at(t0, 400)).expect("a logged error ended");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].repeats, 1);
        // Flapping: the same error again, then a good reply: quiet until the period ends.
        for i in 1..10 {
            assert!(!log.error("NOAUTH", at(t0, 400 + i * 400)).new);
            assert_eq!(log.recovered(at(t0, 600 + i * 400)), None);
        }
        let v = log.error("NOAUTH", at(t0, 60_000));
        assert_eq!(v.summaries[0].repeats, 9);
        // The summary was logged, so is the recovery, with the one repeat since.
        let r = log.recovered(at(t0, 60_100)).expect("recovery logged");
        assert_eq!(r[0].repeats, 1);
    }

    #[test]
    fn errors_that_differ_only_in_numbers_are_one_kind() {
        let t0 = Instant::now();
        let mut log = ErrorLog::new(P, t0);
        assert!(
            log.error("10.0.0.1:6379 did not answer PING within 37.5ms", t0)
                .new
        );
        assert!(
            !log.error("10.0.0.1:6379 did not answer PING within 120ms", at(t0, 1))
                .new
        );
        assert!(
            log.error("10.0.0.1:6379 did not answer INFO within 120ms", at(t0, 2))
                .new
        );
        assert_eq!(kind_of("a 1.5 b 22, c"), "a # b #, c");
    }

    #[test]
    fn distinct_errors_are_bounded() {
        let t0 = Instant::now();
        let mut log = ErrorLog::new(P, t0);
        // Distinct without digits (numbers are blanked out of the kind).
        let name = |i: u64| format!("error {}", "x".repeat(i as usize + 1));
        for i in 0..100u64 {
            assert!(log.error(&name(i), at(t0, i)).new);
        }
        assert!(log.kinds.len() <= MAX_KINDS);
        assert!(!log.error(&name(99), at(t0, 200)).new);
    }
}
