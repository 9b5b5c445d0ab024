//! Probe periods and the subjective-down rules. Pure: times are passed in, so the rules
//! are tested without a clock or a network.

use std::time::Duration;

use redis::Value;
use tokio::time::Instant;

use crate::fsm::ObserveReason;
use crate::view::{InstanceInfo, ReportedRole};

/// INFO period while the master is down (here or in the cluster) or a failover runs (or
/// the normal period, if that is shorter).
pub const INFO_PERIOD_FAST: Duration = Duration::from_millis(100);

/// This node's period settings (`SENTINEL DEBUG`, see [`crate::tuning`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periods {
    /// Longest PING period.
    pub ping_max: Duration,
    /// INFO period in normal times.
    pub info: Duration,
}

impl Default for Periods {
    fn default() -> Self {
        Periods {
            ping_max: Duration::from_millis(crate::tuning::DEFAULT_PING_PERIOD_MS),
            info: Duration::from_millis(crate::tuning::DEFAULT_INFO_PERIOD_MS),
        }
    }
}

/// Periods and timeouts of one probe, derived from the master's `down_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// No acceptable reply for this long: subjectively down.
    pub down_after: Duration,
    /// PING period: `down_after / 10`, at least 50 ms, at most the `PING-PERIOD` setting.
    pub ping_period: Duration,
    /// How long one PING may take before the probe moves on (the PING stays pending).
    pub ping_timeout: Duration,
    /// INFO period (fast or normal).
    pub info_period: Duration,
    /// INFO period in normal times.
    pub info_period_normal: Duration,
    /// How long the INFO pipeline may take.
    pub info_timeout: Duration,
    /// TCP connect plus AUTH.
    pub connect_timeout: Duration,
}

impl Timings {
    /// Timings for a master with this `down_after`, in fast mode or not.
    pub fn of(down_after_ms: u64, fast: bool, p: Periods) -> Timings {
        let down_after = Duration::from_millis(down_after_ms.max(1));
        let ping_period = (down_after / 10)
            .max(Duration::from_millis(50))
            .min(p.ping_max);
        // Loopback replies take microseconds; a slow reply only delays the next PING, it
        // never counts as a good one, so the timeout can stay near the period.
        let ping_timeout = ping_period.max(Duration::from_millis(100));
        Timings {
            down_after,
            ping_period,
            ping_timeout,
            info_period: if fast {
                INFO_PERIOD_FAST.min(p.info)
            } else {
                p.info
            },
            info_period_normal: p.info,
            info_timeout: ping_timeout.max(Duration::from_millis(250)),
            connect_timeout: ping_timeout.max(Duration::from_millis(250)),
        }
    }

    /// A master reporting itself a replica for longer than this is down (Sentinel:
    /// `down_after + 2 x INFO period`).
    pub fn role_mismatch_limit(&self) -> Duration {
        self.down_after + 2 * self.info_period_normal
    }
}

/// `PONG`, `-LOADING` and `-MASTERDOWN` prove the instance is alive (Sentinel's rule);
/// any other reply (`-BUSY`, `-NOAUTH`, garbage) does not.
pub fn acceptable_ping_reply(v: &Value) -> bool {
    match v {
        Value::SimpleString(s) => s.eq_ignore_ascii_case("PONG"),
        Value::BulkString(b) => b.eq_ignore_ascii_case(b"PONG"),
        Value::ServerError(e) => matches!(e.code(), "LOADING" | "MASTERDOWN"),
        _ => false,
    }
}

/// Since when the instance has given no acceptable reply, or `None` while it answers.
///
/// Connected: the oldest unanswered PING (so a stall of this process does not count
/// against Redis). Disconnected: the last good reply, or the probe's start if there was
/// none, as Sentinel measures it.
pub fn no_reply_since(info: &InstanceInfo, probe_started: Instant) -> Option<Instant> {
    if info.connected {
        info.ping_pending_since
    } else {
        Some(info.last_ok_ping_reply.unwrap_or(probe_started))
    }
}

/// Why the instance is subjectively down now, or `None`.
pub fn sdown_reason(
    info: &InstanceInfo,
    probe_started: Instant,
    now: Instant,
    t: &Timings,
    is_master: bool,
    role_mismatch_since: Option<Instant>,
    empty_restart: bool,
) -> Option<ObserveReason> {
    if no_reply_since(info, probe_started)
        .is_some_and(|s| now.saturating_duration_since(s) > t.down_after)
    {
        return Some(ObserveReason::NoReply);
    }
    if is_master && empty_restart {
        return Some(ObserveReason::EmptyRestart);
    }
    if is_master
        && info.role == Some(ReportedRole::Replica)
        && role_mismatch_since
            .is_some_and(|s| now.saturating_duration_since(s) > t.role_mismatch_limit())
    {
        return Some(ObserveReason::RoleReplica);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Addr;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn info() -> InstanceInfo {
        InstanceInfo::new(Addr::new("127.0.0.1", 6379).unwrap(), "m")
    }

    #[test]
    fn periods_follow_down_after() {
        let d = Periods::default();
        assert_eq!(Timings::of(300, false, d).ping_period, ms(50));
        assert_eq!(Timings::of(1000, false, d).ping_period, ms(100));
        assert_eq!(Timings::of(30_000, false, d).ping_period, ms(1000));
        assert_eq!(Timings::of(1000, false, d).info_period, ms(1000));
        assert_eq!(Timings::of(1000, true, d).info_period, ms(100));
        assert_eq!(Timings::of(0, false, d).ping_period, ms(50));
        // SENTINEL DEBUG settings.
        let p = Periods {
            ping_max: ms(20),
            info: ms(5000),
        };
        assert_eq!(Timings::of(1000, false, p).ping_period, ms(20));
        assert_eq!(Timings::of(1000, false, p).info_period, ms(5000));
        assert_eq!(Timings::of(1000, true, p).info_period, ms(100));
        assert_eq!(
            Timings::of(1000, false, p).role_mismatch_limit(),
            ms(11_000)
        );
        let p = Periods {
            ping_max: ms(5000),
            info: ms(50),
        };
        assert_eq!(Timings::of(30_000, false, p).ping_period, ms(3000));
        assert_eq!(Timings::of(1000, true, p).info_period, ms(50));
    }

    #[test]
    fn acceptable_replies_are_sentinels() {
        assert!(acceptable_ping_reply(&Value::SimpleString("PONG".into())));
        assert!(!acceptable_ping_reply(&Value::SimpleString("OK".into())));
        assert!(!acceptable_ping_reply(&Value::Nil));
        assert!(!acceptable_ping_reply(&Value::Int(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn connected_instance_goes_down_after_oldest_unanswered_ping() {
        let t = Timings::of(1000, false, Periods::default());
        let start = Instant::now();
        let mut i = info();
        i.connected = true;
        i.last_ok_ping_reply = Some(start);
        assert_eq!(
            sdown_reason(&i, start, start + ms(5000), &t, true, None, false),
            None
        );
        i.ping_pending_since = Some(start + ms(100));
        assert_eq!(
            sdown_reason(&i, start, start + ms(1100), &t, true, None, false),
            None
        );
        assert_eq!(
            sdown_reason(&i, start, start + ms(1101), &t, true, None, false),
            Some(ObserveReason::NoReply)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn disconnected_instance_counts_from_last_good_reply() {
        let t = Timings::of(500, false, Periods::default());
        let start = Instant::now();
        let mut i = info();
        // Never reached: down `down_after` after the probe started.
        assert_eq!(
            sdown_reason(&i, start, start + ms(500), &t, false, None, false),
            None
        );
        assert_eq!(
            sdown_reason(&i, start, start + ms(501), &t, false, None, false),
            Some(ObserveReason::NoReply)
        );
        i.last_ok_ping_reply = Some(start + ms(2000));
        assert_eq!(
            sdown_reason(&i, start, start + ms(2400), &t, false, None, false),
            None
        );
        assert_eq!(
            sdown_reason(&i, start, start + ms(2501), &t, false, None, false),
            Some(ObserveReason::NoReply)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn master_reporting_replica_for_too_long() {
        let t = Timings::of(1000, false, Periods::default());
        let start = Instant::now();
        let mut i = info();
        i.connected = true;
        i.role = Some(ReportedRole::Replica);
        let since = Some(start);
        let limit = t.role_mismatch_limit();
        assert_eq!(
            sdown_reason(&i, start, start + limit, &t, true, since, false),
            None
        );
        assert_eq!(
            sdown_reason(&i, start, start + limit + ms(1), &t, true, since, false),
            Some(ObserveReason::RoleReplica)
        );
        // A replica that reports replica is fine.
        assert_eq!(
            sdown_reason(&i, start, start + limit + ms(1), &t, false, since, false),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn empty_restart_is_down_only_for_the_master() {
        let t = Timings::of(1000, false, Periods::default());
        let start = Instant::now();
        let mut i = info();
        i.connected = true;
        assert_eq!(
            sdown_reason(&i, start, start, &t, true, None, true),
            Some(ObserveReason::EmptyRestart)
        );
        assert_eq!(sdown_reason(&i, start, start, &t, false, None, true), None);
    }
}
