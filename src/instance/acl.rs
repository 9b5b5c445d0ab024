//! Checks that the Redis user of each master may run every command the coordinator sends,
//! at start and whenever the credentials or the instances change, and says clearly which
//! commands are missing (a failover would otherwise fail half-way, at the worst moment).
//!
//! Nothing is executed that changes anything: read-only commands run as they are; `EXEC` and
//! `DISCARD` are sent outside a transaction (allowed: "without MULTI" error; denied:
//! `NOPERM`); the others are only queued inside `MULTI` (Redis checks ACLs when queueing) and
//! then discarded. If `MULTI` itself is refused, nothing more is sent: a queued-looking
//! `REPLICAOF NO ONE` would otherwise really run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use redis::{Pipeline, Value};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::link::{Auth, Connector};
use crate::consensus::RaftHandle;
use crate::model::Addr;
use crate::shutdown::Shutdown;

const TIMEOUT: Duration = Duration::from_secs(2);
/// Retry an instance that could not be reached after this long.
const RETRY: Duration = Duration::from_secs(10);

/// Read-only commands the coordinator sends, run as they are.
const DIRECT: &[(&str, &[&str])] = &[
    ("ping", &["PING"]),
    ("info", &["INFO", "replication"]),
    ("role", &["ROLE"]),
];
/// Commands checked by queueing them in a transaction that is then discarded.
const QUEUED: &[(&str, &[&str])] = &[
    ("replicaof", &["REPLICAOF", "NO", "ONE"]),
    ("config|rewrite", &["CONFIG", "REWRITE"]),
    ("client|kill", &["CLIENT", "KILL", "TYPE", "normal"]),
    // Holding a master that restarted empty (its syncs and writes) until a replica takes over.
    ("config|get", &["CONFIG", "GET", "repl-diskless-sync-delay"]),
    (
        "config|set",
        &["CONFIG", "SET", "repl-diskless-sync-delay", "5"],
    ),
    ("client|pause", &["CLIENT", "PAUSE", "1", "WRITE"]),
    ("client|unpause", &["CLIENT", "UNPAUSE"]),
    ("failover", &["FAILOVER", "ABORT"]),
];

fn is_noperm(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOPERM")
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// The commands `auth` may not run on `addr`, by ACL name. Errors only when the instance
/// cannot be asked.
pub async fn missing_commands(
    connector: &Connector,
    addr: &Addr,
    auth: &Auth,
) -> Result<Vec<String>, String> {
    // A connection of its own: a shared one could interleave a probe inside the MULTI.
    let mut link = connector
        .connect(addr, auth, TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    for (name, args) in DIRECT
        .iter()
        .chain([("exec", &["EXEC"][..]), ("discard", &["DISCARD"][..])].iter())
    {
        let v = link
            .raw(&cmd(args), name, TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if is_noperm(&v) {
            missing.push(name.to_string());
        }
    }
    let multi = link
        .raw(&cmd(&["MULTI"]), "multi", TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !matches!(multi, Value::Okay | Value::SimpleString(_)) {
        missing.push("multi".to_string());
        // Never send the rest outside a transaction.
        missing.extend(
            QUEUED
                .iter()
                .map(|(n, _)| format!("{n} (unchecked: MULTI refused)")),
        );
        return Ok(missing);
    }
    let mut p = Pipeline::new();
    for (_, args) in QUEUED {
        p.add_command(cmd(args));
    }
    p.add_command(cmd(&["DISCARD"]));
    let replies = link
        .pipeline(&p, QUEUED.len() + 1, "acl check", TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    for ((name, _), v) in QUEUED.iter().zip(&replies) {
        if is_noperm(v) {
            missing.push(name.to_string());
        }
    }
    Ok(missing)
}

/// The instances to check, with the credentials of their master.
fn targets(state: &crate::fsm::ClusterState) -> BTreeMap<(String, Addr), Auth> {
    let mut out = BTreeMap::new();
    for m in state.masters.values() {
        for a in std::iter::once(&m.addr).chain(m.replicas.iter()) {
            out.insert((m.name.clone(), a.clone()), Auth::of(m));
        }
    }
    out
}

/// Credentials a check was made with (user, password, TLS).
type Creds = (Option<String>, Option<String>, bool);

fn auth_key(a: &Auth) -> Creds {
    (a.user.clone(), a.pass.clone(), a.tls)
}

/// Runs the check for every instance of every master, again when credentials change, and
/// retries unreachable instances.
pub async fn run(raft: RaftHandle, connector: Connector, mut shutdown: Shutdown) {
    let mut state_rx = raft.watch_state();
    // (master, addr) → credentials the last conclusive check used.
    let mut done: BTreeMap<(String, Addr), Creds> = BTreeMap::new();
    let mut retry_at: BTreeMap<(String, Addr), Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = state_rx.changed() => if r.is_err() { return },
            _ = shutdown.recv() => return,
        }
        let state: Arc<_> = state_rx.borrow_and_update().clone();
        let targets = targets(&state);
        let live: BTreeSet<_> = targets.keys().cloned().collect();
        done.retain(|k, _| live.contains(k));
        for (key, auth) in targets {
            if done.get(&key) == Some(&auth_key(&auth))
                || retry_at.get(&key).is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            let (master, addr) = &key;
            let user = auth.user.clone().unwrap_or_else(|| "default".into());
            match missing_commands(&connector, addr, &auth).await {
                Ok(missing) if missing.is_empty() => {
                    info!(master = %master, addr = %addr, user = %user, "Redis ACL check passed: the user may run every command the coordinator sends");
                    done.insert(key.clone(), auth_key(&auth));
                    retry_at.remove(&key);
                }
                Ok(missing) => {
                    error!(
                        master = %master,
                        addr = %addr,
                        user = %user,
                        missing = %missing.join(", "),
                        "Redis ACL user '{user}' on {addr} lacks: {}; failovers of {master} will fail until it is granted (see the least-privilege ACL in deploy/README.md)",
                        missing.join(", ")
                    );
                    done.insert(key.clone(), auth_key(&auth));
                    retry_at.remove(&key);
                }
                Err(e) => {
                    warn!(master = %master, addr = %addr, error = %e, "Redis ACL check postponed: instance not reachable");
                    retry_at.insert(key.clone(), Instant::now() + RETRY);
                }
            }
        }
    }
}
