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
    /// PING period of a master, and of its replicas while it is in trouble: `down_after / 3`,
    /// at least 50 ms, at most the `PING-PERIOD` setting. Subjective down is decided by a
    /// deadline (see [`down_at`]), not by counting PINGs, so a healthy master's freshest reply
    /// is at most a third of `down_after` old when the next PING goes out.
    pub ping_period: Duration,
    /// PING period of a replica while its master is fine: Sentinel's pace, `PING-PERIOD`
    /// (1 s by default) or `down_after` if shorter, never below `ping_period`.
    pub replica_ping_period: Duration,
    /// How long the oldest unanswered PING is given at least before the instance is down:
    /// `down_after - ping_period` (see [`down_at`]).
    pub reply_grace: Duration,
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
        let ping_period = Duration::from_millis(down_after_ms / 3)
            .max(Duration::from_millis(50))
            .min(p.ping_max);
        let replica_ping_period = if fast {
            ping_period
        } else {
            p.ping_max.min(down_after).max(ping_period)
        };
        // A reply that comes after the timeout is not counted (the link may be dropped), so a
        // master answering slower than this is eventually down. Half of down_after, the age
        // at which Sentinel drops a link with an unanswered PING; never past the deadline
        // (see `Probe::io_budget`).
        let ping_timeout = (down_after / 2)
            .max(ping_period)
            .max(Duration::from_millis(100));
        let io_timeout = ping_period.max(Duration::from_millis(250));
        Timings {
            down_after,
            ping_period,
            replica_ping_period,
            reply_grace: down_after.saturating_sub(ping_period),
            ping_timeout,
            info_period: if fast {
                INFO_PERIOD_FAST.min(p.info)
            } else {
                p.info
            },
            info_period_normal: p.info,
            info_timeout: io_timeout,
            connect_timeout: io_timeout,
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
/// Connected: the last good reply, while a PING is unanswered (the PING itself if no reply
/// came yet); nothing while none is, so that a stall of this process, during which it sent
/// nothing, does not count against Redis. Disconnected: the last good reply, or the probe's
/// start if there was none, as Sentinel measures it.
pub fn no_reply_since(info: &InstanceInfo, probe_started: Instant) -> Option<Instant> {
    if info.connected {
        let pending = info.ping_pending_since?;
        Some(info.last_ok_ping_reply.map_or(pending, |r| r.min(pending)))
    } else {
        Some(info.last_ok_ping_reply.unwrap_or(probe_started))
    }
}

/// When the instance turns subjectively down for want of replies, or `None` while no PING
/// is unanswered on a live connection.
///
/// `down_after` after the last good reply, but (connected) never before the oldest
/// unanswered PING has had `reply_grace`. PINGs go out every `ping_period`, so that PING was
/// sent at most `ping_period` after the last reply, and the grace ends no later than
/// `down_after` after it: detection stays at `down_after` after the last good reply. The
/// grace matters when this process sent late (it stalled, or was busy): a PING sent after a
/// long silence of ours gets `reply_grace` to be answered, as Sentinel gives each PING
/// `down_after`. A healthy but slow master is not judged down while its replies take less
/// than the PING timeout (half of `down_after`): each reply then comes within
/// `ping_period + down_after / 2` of the previous one.
pub fn down_at(info: &InstanceInfo, probe_started: Instant, t: &Timings) -> Option<Instant> {
    let since = no_reply_since(info, probe_started)?;
    let by_reply = since + t.down_after;
    match info.ping_pending_since {
        Some(p) if info.connected => Some(by_reply.max(p + t.reply_grace)),
        _ => Some(by_reply),
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
    if down_at(info, probe_started, t).is_some_and(|at| now > at) {
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
        assert_eq!(Timings::of(300, false, d).ping_period, ms(100));
        assert_eq!(Timings::of(1000, false, d).ping_period, ms(333));
        assert_eq!(Timings::of(1000, false, d).reply_grace, ms(667));
        assert_eq!(Timings::of(30_000, false, d).ping_period, ms(1000));
        assert_eq!(Timings::of(1000, false, d).info_period, ms(1000));
        assert_eq!(Timings::of(1000, true, d).info_period, ms(100));
        assert_eq!(Timings::of(0, false, d).ping_period, ms(50));
        // Replicas at Sentinel's pace while their master is fine, at the master's when not.
        assert_eq!(Timings::of(1000, false, d).replica_ping_period, ms(1000));
        assert_eq!(Timings::of(500, false, d).replica_ping_period, ms(500));
        assert_eq!(Timings::of(1000, true, d).replica_ping_period, ms(333));
        assert_eq!(Timings::of(60, false, d).replica_ping_period, ms(60));
        // SENTINEL DEBUG settings.
        let p = Periods {
            ping_max: ms(20),
            info: ms(5000),
        };
        assert_eq!(Timings::of(1000, false, p).ping_period, ms(20));
        assert_eq!(Timings::of(1000, false, p).replica_ping_period, ms(20));
        assert_eq!(Timings::of(1000, false, p).reply_grace, ms(980));
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
        assert_eq!(Timings::of(30_000, false, p).ping_period, ms(5000));
        assert_eq!(Timings::of(30_000, false, p).replica_ping_period, ms(5000));
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
    async fn connected_instance_goes_down_down_after_past_its_last_reply() {
        let t = Timings::of(1000, false, Periods::default());
        let start = Instant::now();
        let mut i = info();
        i.connected = true;
        i.last_ok_ping_reply = Some(start);
        // No PING unanswered: nothing to judge, however old the reply.
        assert_eq!(
            sdown_reason(&i, start, start + ms(5000), &t, true, None, false),
            None
        );
        assert_eq!(down_at(&i, start, &t), None);
        // It hangs: the next PING, one period later, gets no reply. Down `down_after` after
        // the last reply, not after that PING.
        i.ping_pending_since = Some(start + t.ping_period);
        assert_eq!(down_at(&i, start, &t), Some(start + ms(1000)));
        assert_eq!(
            sdown_reason(&i, start, start + ms(1000), &t, true, None, false),
            None
        );
        assert_eq!(
            sdown_reason(&i, start, start + ms(1001), &t, true, None, false),
            Some(ObserveReason::NoReply)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_sent_late_gets_its_grace() {
        // This process sent nothing for 2 s (stalled or busy): the PING it sends then is
        // given `reply_grace`, not judged against the old reply at once.
        let t = Timings::of(1000, false, Periods::default());
        let start = Instant::now();
        let mut i = info();
        i.connected = true;
        i.last_ok_ping_reply = Some(start);
        let sent = start + ms(2000);
        i.ping_pending_since = Some(sent);
        assert_eq!(down_at(&i, start, &t), Some(sent + ms(667)));
        assert_eq!(
            sdown_reason(&i, start, sent + ms(667), &t, true, None, false),
            None
        );
        assert_eq!(
            sdown_reason(&i, start, sent + ms(668), &t, true, None, false),
            Some(ObserveReason::NoReply)
        );
        // Never answered since the probe started: `down_after` after the first attempt.
        let mut j = info();
        j.connected = true;
        j.ping_pending_since = Some(start);
        assert_eq!(down_at(&j, start, &t), Some(start + ms(1000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_but_slow_master_is_not_down() {
        // Each reply takes `lag`. The probe waits for it (up to the PING timeout), then sends
        // the next PING one period after the previous one went out, or at once if that is
        // past. The next reply must come before the deadline.
        let t = Timings::of(1000, false, Periods::default());
        let start = Instant::now();
        let down_while_waiting = |lag: Duration| {
            let mut i = info();
            i.connected = true;
            i.last_ok_ping_reply = Some(start);
            let sent = (start - lag + t.ping_period).max(start);
            i.ping_pending_since = Some(sent);
            let reply = sent + lag;
            sdown_reason(&i, start, reply - ms(1), &t, true, None, false).is_some()
        };
        for lag in [1, 100, 333, 400, 499, 500] {
            assert!(!down_while_waiting(ms(lag)), "{lag} ms");
        }
        assert_eq!(t.ping_timeout, ms(500));
        // Replies slower than down_after: down.
        assert!(down_while_waiting(ms(1100)));
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
