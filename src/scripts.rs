//! Sentinel's `notification-script` and `client-reconfig-script`, run by every node from the
//! events it applies.
//!
//! - `client-reconfig-script <master> <leader|observer> start <from-ip> <from-port> <to-ip>
//!   <to-port>` once per committed switch on each node. The epoch of the last switch handled
//!   per master is written (fsync'd) to `scripts-handled.json` in the data dir *before* the
//!   script is queued, so a switch never runs twice on one node, across restarts included
//!   (like Sentinel, a crash between the record and the run loses that run rather than
//!   repeating it). A node catching up on the log runs it only for the newest switch of each
//!   master: older ones are superseded and skipped.
//! - `notification-script <event> <description>` for the warning-level events Sentinel
//!   passes to it, as this node publishes them.
//!
//! Scripts run without a shell and with an empty environment; at most 16 at once; a queue of
//! 256 (the oldest waiting job is dropped when full); exit 1 or a signal is retried up to 10
//! attempts, the delay doubling from `retry_delay`; a script still running after
//! `max_runtime` is killed (and, as in Sentinel, retried like any signalled script).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::consensus::RaftHandle;
use crate::fsm::Event;
use crate::model::{Epoch, NodeId};
use crate::shutdown::Shutdown;

/// Scripts running at once (Sentinel's `SENTINEL_SCRIPT_MAX_RUNNING`).
pub const MAX_RUNNING: usize = 16;
/// Jobs queued or running (Sentinel's `SENTINEL_SCRIPT_MAX_QUEUE`).
pub const MAX_QUEUE: usize = 256;
/// Attempts of one job (Sentinel's `SENTINEL_SCRIPT_MAX_RETRY`).
pub const MAX_ATTEMPTS: u32 = 10;

const HANDLED_FILE: &str = "scripts-handled.json";

/// Events Sentinel logs at warning level for an instance, the ones its notification script
/// receives. `+tilt`/`-tilt` are warnings too, but of the process, not of an instance: Sentinel
/// runs no script for them (the script belongs to a master), and they never come from the log.
fn is_warning(kind: &str) -> bool {
    matches!(
        kind,
        "+sdown"
            | "-sdown"
            | "+odown"
            | "-odown"
            | "+new-epoch"
            | "+try-failover"
            | "+elected-leader"
            | "+selected-slave"
            | "+promoted-slave"
            | "+switch-master"
            | "+failover-end"
            | "+failover-end-for-timeout"
            | "+monitor"
            | "-monitor"
            | "+reset-master"
            | "+set"
            | "+reboot"
    ) || kind.starts_with("-failover-abort-")
}

/// Timing of script runs (changed by `SENTINEL DEBUG`).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// A script still running after this long is killed.
    pub max_runtime: Duration,
    /// Delay before the first retry; doubles with each one.
    pub retry_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            max_runtime: Duration::from_secs(60),
            retry_delay: Duration::from_secs(30),
        }
    }
}

/// One queued or running script.
#[derive(Clone, Debug)]
pub struct Job {
    /// Path then arguments.
    pub argv: Vec<String>,
    /// Attempts started so far.
    pub retry_num: u32,
    /// Process id while running.
    pub pid: Option<u32>,
    /// Started (running) or due (waiting).
    pub at: Instant,
    id: u64,
}

/// The queue, shared with `SENTINEL PENDING-SCRIPTS` and `INFO sentinel`.
#[derive(Default)]
pub struct Scripts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    jobs: VecDeque<Job>,
    next_id: u64,
    timing: Option<Timing>,
}

impl Scripts {
    /// Jobs in queue order.
    pub fn pending(&self) -> Vec<Job> {
        self.inner.lock().jobs.iter().cloned().collect()
    }

    /// (running, queued) counts for `INFO sentinel`.
    pub fn counts(&self) -> (usize, usize) {
        let g = self.inner.lock();
        let running = g.jobs.iter().filter(|j| j.pid.is_some()).count();
        (running, g.jobs.len())
    }

    /// Current timing.
    pub fn timing(&self) -> Timing {
        self.inner.lock().timing.unwrap_or_default()
    }

    /// Changes the timing of runs from now on.
    pub fn set_timing(&self, t: Timing) {
        self.inner.lock().timing = Some(t);
    }

    /// Queues a script; when the queue is full the oldest waiting job makes room.
    pub fn enqueue(&self, argv: Vec<String>) {
        let mut g = self.inner.lock();
        if g.jobs.len() >= MAX_QUEUE {
            match g.jobs.iter().position(|j| j.pid.is_none()) {
                Some(i) => {
                    let dropped = g.jobs.remove(i);
                    warn!(argv = ?dropped.map(|j| j.argv), "script queue full; dropped the oldest waiting script");
                }
                None => {
                    warn!(?argv, "script queue full of running scripts; not queued");
                    return;
                }
            }
        }
        g.next_id += 1;
        let id = g.next_id;
        g.jobs.push_back(Job {
            argv,
            retry_num: 0,
            pid: None,
            at: Instant::now(),
            id,
        });
    }

    /// Marks due jobs running, up to [`MAX_RUNNING`]; returns them.
    fn take_due(&self, now: Instant) -> Vec<Job> {
        let mut g = self.inner.lock();
        let mut running = g.jobs.iter().filter(|j| j.pid.is_some()).count();
        let mut out = Vec::new();
        for j in g.jobs.iter_mut() {
            if running >= MAX_RUNNING {
                break;
            }
            if j.pid.is_none() && j.at <= now {
                j.retry_num += 1;
                j.pid = Some(0);
                j.at = now;
                running += 1;
                out.push(j.clone());
            }
        }
        out
    }

    fn set_pid(&self, id: u64, pid: u32) {
        if let Some(j) = self.inner.lock().jobs.iter_mut().find(|j| j.id == id) {
            j.pid = Some(pid);
        }
    }

    /// A run ended: drop the job, or schedule its retry.
    fn finish(&self, id: u64, retry: bool) {
        let mut g = self.inner.lock();
        let delay = g.timing.unwrap_or_default().retry_delay;
        let Some(i) = g.jobs.iter().position(|j| j.id == id) else {
            return;
        };
        let j = &mut g.jobs[i];
        if retry && j.retry_num < MAX_ATTEMPTS {
            j.pid = None;
            j.at = Instant::now() + delay * 2u32.saturating_pow(j.retry_num - 1);
        } else {
            g.jobs.remove(i);
        }
    }
}

/// How one run ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Ok,
    /// Exit 1 or a signal: worth another attempt.
    Retry(String),
    /// Another exit code, or it could not start.
    Failed(String),
    TimedOut,
}

async fn run_one(argv: &[String], max_runtime: Duration, on_pid: impl FnOnce(u32)) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ended::Failed(format!("cannot start: {e}")),
    };
    if let Some(pid) = child.id() {
        on_pid(pid);
    }
    match tokio::time::timeout(max_runtime, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Ended::TimedOut
        }
        Ok(Err(e)) => Ended::Failed(format!("wait: {e}")),
        Ok(Ok(st)) => match (st.code(), st.signal()) {
            (Some(0), _) => Ended::Ok,
            (Some(1), _) => Ended::Retry("exit 1".into()),
            (None, Some(sig)) => Ended::Retry(format!("signal {sig}")),
            (Some(c), _) => Ended::Failed(format!("exit {c}")),
            (None, None) => Ended::Failed("unknown status".into()),
        },
    }
}

/// Epoch of the last switch handled per master, kept in the data dir.
struct Handled {
    path: PathBuf,
    epochs: BTreeMap<String, Epoch>,
}

impl Handled {
    fn load(dir: &Path) -> Handled {
        let path = dir.join(HANDLED_FILE);
        let epochs = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "unreadable script record; starting empty");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Handled { path, epochs }
    }

    /// Records `epoch` for `master` durably: temp file, fsync, rename, fsync of the dir.
    fn record(&mut self, master: &str, epoch: Epoch) -> std::io::Result<()> {
        use std::io::Write;
        self.epochs.insert(master.to_string(), epoch);
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&self.epochs).expect("map of strings and integers"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// What the runner should queue for one applied event (pure, for tests).
fn jobs_for(
    ev: &Event,
    me: NodeId,
    notification: Option<&str>,
    reconfig: Option<&str>,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // A node's own sdown only, as it publishes them.
    if ev.node.is_some_and(|n| n != me) {
        return out;
    }
    if let Some(path) = notification {
        if is_warning(&ev.kind) {
            out.push(vec![path.to_string(), ev.kind.clone(), ev.payload.clone()]);
        }
    }
    if let (Some(path), Some((_, leader))) = (reconfig, ev.switch) {
        // Payload: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
        let p: Vec<&str> = ev.payload.split(' ').collect();
        if p.len() == 5 {
            let role = if leader == me { "leader" } else { "observer" };
            out.push(
                [path, p[0], role, "start", p[1], p[2], p[3], p[4]]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
    }
    out
}

/// Runs scripts for the events this node applies until shutdown.
pub async fn run(
    raft: RaftHandle,
    scripts: Arc<Scripts>,
    data_dir: PathBuf,
    mut shutdown: Shutdown,
) {
    let mut events = raft.subscribe_events();
    let mut handled = Handled::load(&data_dir);
    let me = raft.node_id();
    let mut running: JoinSet<(u64, Ended, Vec<String>)> = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            ev = events.recv() => match ev {
                Ok(a) => {
                    let ev = a.event;
                    let Some(name) = ev.master.as_deref() else { continue };
                    let st = raft.state();
                    let Some(m) = st.masters.get(name) else { continue };
                    let mut reconfig = m.client_reconfig_script.as_deref();
                    if let Some((epoch, _)) = ev.switch {
                        if handled.epochs.get(name).is_some_and(|&h| h >= epoch) {
                            info!(master = name, epoch, "switch already handled; script not run again");
                            reconfig = None;
                        } else if m.config_epoch > epoch {
                            info!(master = name, epoch, newer = m.config_epoch, "switch superseded by a newer one; script skipped");
                            reconfig = None;
                        } else if let Err(e) = handled.record(name, epoch) {
                            // Without the record a restart could run it twice: do not run it.
                            warn!(master = name, epoch, error = %e, "cannot record the switch; reconfig script not run");
                            reconfig = None;
                        }
                    }
                    for argv in jobs_for(&ev, me, m.notification_script.as_deref(), reconfig) {
                        info!(?argv, "script queued");
                        scripts.enqueue(argv);
                    }
                }
                Err(RecvError::Lagged(n)) => warn!(missed = n, "script runner fell behind; events skipped"),
                Err(RecvError::Closed) => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((id, ended, argv)) = done else { continue };
                match &ended {
                    Ended::Ok => info!(?argv, "script succeeded"),
                    Ended::Retry(why) => warn!(?argv, why, "-script-error; retrying"),
                    Ended::Failed(why) => warn!(?argv, why, "-script-error"),
                    Ended::TimedOut => warn!(?argv, "-script-timeout; killed"),
                }
                // Sentinel collects a killed script as signalled, and retries it.
                scripts.finish(id, matches!(ended, Ended::Retry(_) | Ended::TimedOut));
            }
            _ = tick.tick() => {}
        }
        let max_runtime = scripts.timing().max_runtime;
        for job in scripts.take_due(Instant::now()) {
            let s = scripts.clone();
            let id = job.id;
            running.spawn(async move {
                let ended = run_one(&job.argv, max_runtime, |pid| s.set_pid(id, pid)).await;
                (id, ended, job.argv)
            });
        }
    }
    running.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(leader: NodeId) -> Event {
        Event::new(
            "+switch-master",
            "m 10.0.0.1 6379 10.0.0.2 6380".into(),
            Some("m"),
        )
        .of_switch(3, leader)
    }

    #[test]
    fn reconfig_arguments_and_role() {
        let j = jobs_for(&switch(1), 1, None, Some("/bin/x"));
        assert_eq!(
            j,
            vec![vec![
                "/bin/x", "m", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380"
            ]]
        );
        let j = jobs_for(&switch(1), 2, Some("/bin/n"), Some("/bin/x"));
        assert_eq!(j.len(), 2);
        assert_eq!(
            j[0],
            vec!["/bin/n", "+switch-master", "m 10.0.0.1 6379 10.0.0.2 6380"]
        );
        assert_eq!(j[1][2], "observer");
    }

    #[test]
    fn notification_only_for_warnings_and_own_sdown() {
        let slave = Event::new("+slave", "x".into(), Some("m"));
        assert!(jobs_for(&slave, 1, Some("/n"), None).is_empty());
        let sdown = Event::new("+sdown", "master m 1.1.1.1 1".into(), Some("m")).of_node(2);
        assert!(jobs_for(&sdown, 1, Some("/n"), None).is_empty());
        assert_eq!(jobs_for(&sdown, 2, Some("/n"), None).len(), 1);
    }

    #[test]
    fn handled_record_survives_reload() {
        let d = tempfile::tempdir().unwrap();
        let mut h = Handled::load(d.path());
        h.record("m", 7).unwrap();
        assert_eq!(Handled::load(d.path()).epochs.get("m"), Some(&7));
    }

    #[test]
    fn queue_is_bounded_and_drops_the_oldest_waiting() {
        let s = Scripts::default();
        for i in 0..MAX_QUEUE + 3 {
            s.enqueue(vec![format!("/s{i}")]);
        }
        let p = s.pending();
        assert_eq!(p.len(), MAX_QUEUE);
        assert_eq!(p[0].argv[0], "/s3");
        assert_eq!(s.take_due(Instant::now()).len(), MAX_RUNNING);
    }

    #[tokio::test]
    async fn exit_codes_and_timeout() {
        let d = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = d.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p.display().to_string()
        };
        let t = Duration::from_secs(5);
        // The environment is empty.
        let env = script("env", "test -z \"$HOME\" || exit 2");
        assert_eq!(run_one(&[env], t, |_| {}).await, Ended::Ok);
        let one = script("one", "exit 1");
        assert!(matches!(run_one(&[one], t, |_| {}).await, Ended::Retry(_)));
        let two = script("two", "exit 2");
        assert!(matches!(run_one(&[two], t, |_| {}).await, Ended::Failed(_)));
        let slow = script("slow", "sleep 5");
        let started = Instant::now();
        assert_eq!(
            run_one(&[slow], Duration::from_millis(200), |_| {}).await,
            Ended::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(
            run_one(&["/nonexistent/x".into()], t, |_| {}).await,
            Ended::Failed(_)
        ));
    }

    #[test]
    fn retries_back_off_then_stop() {
        let s = Scripts::default();
        s.set_timing(Timing {
            max_runtime: Duration::from_secs(1),
            retry_delay: Duration::from_millis(10),
        });
        s.enqueue(vec!["/x".into()]);
        let mut attempts = 0;
        for _ in 0..50 {
            let due = s.take_due(Instant::now() + Duration::from_secs(3600));
            if due.is_empty() {
                break;
            }
            attempts += 1;
            s.finish(due[0].id, true);
        }
        assert_eq!(attempts, MAX_ATTEMPTS);
        assert!(s.pending().is_empty());
    }
}
