//! The commands the executor sends to Redis. Each opens its own short-lived connection, so
//! a slow instance never blocks the probes, and every call has a timeout.

use std::time::Duration;

use redis::Value;
use tracing::{debug, info, warn};

use crate::instance::info::{
    parse_replication, parse_role, value_text, ReplicationInfo, RoleReply,
};
use crate::instance::link::{server_error_line, short, Auth, Connector, Link, LinkError};
use crate::model::Addr;
use crate::view::ReportedRole;

/// Connect plus AUTH.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One command or transaction.
pub(crate) const CMD_TIMEOUT: Duration = Duration::from_millis(1000);

/// Opens a connection for the executor.
pub(crate) async fn connect(
    connector: &Connector,
    addr: &Addr,
    auth: &Auth,
) -> Result<Link, LinkError> {
    connector.connect(addr, auth, CONNECT_TIMEOUT).await
}

/// `ROLE`.
pub(crate) async fn role(link: &mut Link) -> Result<RoleReply, LinkError> {
    let v = link.query(&redis::cmd("ROLE"), "ROLE", CMD_TIMEOUT).await?;
    parse_role(&v).map_err(|e| LinkError::Unexpected {
        addr: link.addr().clone(),
        what: "ROLE".into(),
        detail: e.to_string(),
    })
}

/// `INFO replication`.
pub(crate) async fn replication(link: &mut Link) -> Result<ReplicationInfo, LinkError> {
    let mut c = redis::cmd("INFO");
    c.arg("replication");
    let text = link.text(&c, "INFO replication", CMD_TIMEOUT).await?;
    parse_replication(&text).map_err(|e| LinkError::Unexpected {
        addr: link.addr().clone(),
        what: "INFO replication".into(),
        detail: e.to_string(),
    })
}

/// Sends Sentinel's reconfiguration transaction: `MULTI; REPLICAOF <to>; CONFIG REWRITE;
/// CLIENT KILL TYPE normal; CLIENT KILL TYPE pubsub; EXEC`, with `to` = `None` for
/// `REPLICAOF NO ONE`. Clients are killed so they reconnect and ask where the master is.
///
/// A failing `CONFIG REWRITE` (no config file, or not allowed) does not stop it. If Redis
/// refuses the whole transaction (for example an ACL without `CONFIG`), `REPLICAOF` is sent
/// on its own and the client kills are best effort.
pub(crate) async fn replicaof(link: &mut Link, to: Option<&Addr>) -> Result<(), LinkError> {
    replicaof_then_role(link, to, false).await.map(|_| ())
}

/// The promotion: [`replicaof`] with `REPLICAOF NO ONE`, and `ROLE` in the same write right
/// after the transaction, so the check that the candidate is master costs no round trip of
/// its own. Redis runs them in order: `ROLE` sees the result (and `CLIENT KILL` spares the
/// connection that sends it).
pub(crate) async fn promote(link: &mut Link) -> Result<RoleReply, LinkError> {
    match replicaof_then_role(link, None, true).await? {
        Some(r) => Ok(r),
        None => role(link).await,
    }
}

/// [`replicaof`], with `ROLE` pipelined after it when `with_role`; its reply is returned
/// when the transaction ran (None when it was refused and sent piecemeal).
async fn replicaof_then_role(
    link: &mut Link,
    to: Option<&Addr>,
    with_role: bool,
) -> Result<Option<RoleReply>, LinkError> {
    let what = match to {
        Some(a) => format!("REPLICAOF {} {}", a.host, a.port),
        None => "REPLICAOF NO ONE".to_string(),
    };
    let replicaof = replicaof_cmd(to);
    let mut p = redis::pipe();
    p.cmd("MULTI");
    p.add_command(replicaof.clone());
    p.cmd("CONFIG").arg("REWRITE");
    p.cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal");
    p.cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub");
    p.cmd("EXEC");
    if with_role {
        p.cmd("ROLE");
    }
    let count = if with_role { 7 } else { 6 };
    let replies = link.pipeline(&p, count, &what, CMD_TIMEOUT).await?;
    match &replies[5] {
        Value::Array(results) => {
            match results.first() {
                Some(Value::ServerError(e)) => {
                    return Err(LinkError::Server {
                        addr: link.addr().clone(),
                        what,
                        message: server_error_line(e),
                    })
                }
                Some(_) => {}
                None => {
                    return Err(LinkError::Unexpected {
                        addr: link.addr().clone(),
                        what,
                        detail: "EXEC returned no results".into(),
                    })
                }
            }
            if let Some(Value::ServerError(e)) = results.get(1) {
                debug!(addr = %link.addr(), error = %server_error_line(e), "CONFIG REWRITE failed (ignored)");
            }
            // An unreadable ROLE reply is asked again on its own by the caller.
            Ok(replies.get(6).and_then(|v| parse_role(v).ok()))
        }
        Value::ServerError(e) => {
            warn!(
                addr = %link.addr(),
                error = %server_error_line(e),
                "transaction refused; sending {what} alone"
            );
            link.query(&replicaof, &what, CMD_TIMEOUT).await?;
            for kind in ["normal", "pubsub"] {
                let mut c = redis::cmd("CLIENT");
                c.arg("KILL").arg("TYPE").arg(kind);
                if let Err(e) = link.query(&c, "CLIENT KILL", CMD_TIMEOUT).await {
                    debug!(error = %e, "CLIENT KILL failed (ignored)");
                }
            }
            Ok(None)
        }
        other => Err(LinkError::Unexpected {
            addr: link.addr().clone(),
            what,
            detail: format!("EXEC returned {}", short(other)),
        }),
    }
}

fn replicaof_cmd(to: Option<&Addr>) -> redis::Cmd {
    let mut c = redis::cmd("REPLICAOF");
    match to {
        Some(a) => c.arg(&a.host).arg(a.port),
        None => c.arg("NO").arg("ONE"),
    };
    c
}

/// Outcome of asking a master for a handover.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FailoverTo {
    /// Redis accepted `FAILOVER TO` and is handing over.
    Started,
    /// A handover is already running there (a previous leader started it).
    AlreadyRunning,
    /// The replica did not catch up while writes were paused; nothing changed.
    NotCaughtUp {
        /// The master's offset when writes were paused.
        master: i64,
        /// The replica's offset when we gave up.
        replica: i64,
    },
}

/// Zero-loss handover of a healthy master to `to`, with Redis's own `FAILOVER TO`.
///
/// Plain `FAILOVER TO` waits for the replica's acknowledgement, which Redis 7.0 only
/// sends once per second while writes are paused: a one-second write stall. Instead:
/// pause writes (`CLIENT PAUSE WRITE`, bounded by `pause_ms` so a crash here cannot stall
/// clients for longer), read the master's offset, wait until the replica's own INFO shows
/// that offset, then `FAILOVER TO ... FORCE TIMEOUT 1`: Redis demotes the master and
/// promotes the replica with `PSYNC FAILOVER` right away, and no acknowledged write can be
/// missing because none was accepted since the offset was read. The caller unpauses the
/// old master once it reports the replica role (its held writers then get `-READONLY`).
pub(crate) async fn handover(
    old: &mut Link,
    cand: &mut Link,
    to: &Addr,
    pause_ms: u64,
) -> Result<FailoverTo, LinkError> {
    let result = async {
        let master = replication(old).await?;
        if master
            .failover_state
            .as_deref()
            .is_some_and(|s| s != "no-failover")
        {
            return Ok(FailoverTo::AlreadyRunning);
        }
        let target = pause_writes(old, pause_ms).await?;
        let have = wait_offset(cand, target, Duration::from_millis(pause_ms / 2)).await?;
        if have < target {
            return Ok(FailoverTo::NotCaughtUp {
                master: target,
                replica: have,
            });
        }
        let mut c = redis::cmd("FAILOVER");
        c.arg("TO")
            .arg(&to.host)
            .arg(to.port)
            .arg("FORCE")
            .arg("TIMEOUT")
            .arg(1);
        match old.query(&c, "FAILOVER TO", CMD_TIMEOUT).await {
            Ok(v) if value_text(&v).as_deref() == Some("OK") => {
                info!(addr = %old.addr(), target = %to, offset = target, "FAILOVER TO accepted");
                Ok(FailoverTo::Started)
            }
            Ok(v) => Err(LinkError::Unexpected {
                addr: old.addr().clone(),
                what: "FAILOVER TO".into(),
                detail: short(&v),
            }),
            Err(LinkError::Server { message, .. }) if message.contains("already in progress") => {
                Ok(FailoverTo::AlreadyRunning)
            }
            Err(e) => Err(e),
        }
    }
    .await;
    if !matches!(result, Ok(FailoverTo::Started | FailoverTo::AlreadyRunning)) {
        unpause(old).await;
    }
    result
}

/// `CLIENT PAUSE <pause_ms> WRITE`, then the master's offset (final while paused).
async fn pause_writes(old: &mut Link, pause_ms: u64) -> Result<i64, LinkError> {
    let mut pause = redis::cmd("CLIENT");
    pause.arg("PAUSE").arg(pause_ms).arg("WRITE");
    old.query(&pause, "CLIENT PAUSE WRITE", CMD_TIMEOUT).await?;
    Ok(replication(old).await?.master_repl_offset)
}

/// Polls the replica's own `slave_repl_offset` until it reaches `target` or `limit`
/// passes; returns the last offset seen.
async fn wait_offset(cand: &mut Link, target: i64, limit: Duration) -> Result<i64, LinkError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let have = replication(cand).await?.slave_repl_offset.unwrap_or(-1);
        if have >= target || tokio::time::Instant::now() >= deadline {
            return Ok(have);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Pauses writes on a master that is still up and waits (at most `limit`) until the
/// candidate has everything it acknowledged. Returns whether it caught up. The pause ends
/// by itself after `pause_ms`.
pub(crate) async fn pause_and_wait(
    old: &mut Link,
    cand: &mut Link,
    pause_ms: u64,
    limit: Duration,
) -> Result<bool, LinkError> {
    if replication(old).await?.role != ReportedRole::Master {
        return Ok(false);
    }
    let target = pause_writes(old, pause_ms).await?;
    Ok(wait_offset(cand, target, limit).await? >= target)
}

/// `CLIENT UNPAUSE`, best effort (the pause also ends by itself).
pub(crate) async fn unpause(link: &mut Link) {
    let mut c = redis::cmd("CLIENT");
    c.arg("UNPAUSE");
    if let Err(e) = link.query(&c, "CLIENT UNPAUSE", CMD_TIMEOUT).await {
        debug!(error = %e, "CLIENT UNPAUSE failed (the pause expires by itself)");
    }
}
