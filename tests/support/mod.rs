//! Shared helpers for tests that run real processes: `redis-server` instances and nodes of the
//! real `raft-sentinel` binary, each on free loopback ports in its own temp dir, stopped by pid
//! on drop (and their logs printed when a test panics).
#![allow(dead_code)]

mod http;
pub mod netns;
mod node_toml;
pub mod real_sentinel;
mod replication;
pub mod resp;
pub mod tls;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use raft_sentinel::pb::api as pb;
use raft_sentinel::pb::api::coordinator_client::CoordinatorClient;
use tempfile::TempDir;
use tokio::time::Instant;
use tonic::transport::Channel;

// Re-exported for the test files; each uses only some of them.
#[allow(unused_imports)]
pub use http::{http_get, http_get_raw};
#[allow(unused_imports)]
pub use node_toml::{MasterToml, NodeToml};
#[allow(unused_imports)]
pub use replication::{follows, info_field, offset, wait_synced};

/// A Coordinator client that sends the API password, when the node has one.
pub type ApiClient =
    CoordinatorClient<tonic::service::interceptor::InterceptedService<Channel, ApiCredential>>;

/// Adds `authorization: Bearer <password>` to every call.
#[derive(Clone)]
pub struct ApiCredential(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for ApiCredential {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_raft-sentinel");

/// A loopback port nobody listens on right now, never the same one twice in this process.
///
/// Ports come from 20000..32000, below Linux's ephemeral range (32768+), so an outgoing
/// connection of another process cannot grab one between this call and the node binding it; the
/// process-wide counter keeps two nodes of one test from being handed the same port, which
/// binding to port 0 and releasing it does not guarantee.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Start each test process at a different offset so concurrent test binaries rarely meet.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Polls the blocking check `f` (a command run, a file read) every 100 ms until it returns
/// `Some`, or panics after `limit` with `what`.
pub async fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_for_every(Duration::from_millis(100), what, limit, f).await
}

/// [`wait_for`] with its own polling period, for checks that time an event closely.
pub async fn wait_for_every<T>(
    poll: Duration,
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(poll).await;
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` has a SIGTERM handler installed (`SigCgt` in /proc): a node installs
/// it once started, so a SIGTERM from then on is a clean shutdown, not the default death.
pub fn catches_sigterm(pid: u32) -> bool {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & SIGTERM_BIT != 0)
}

/// [`signal`] to a process the test still runs (`pid` is None once it was killed).
fn signal_running(pid: Option<u32>, sig: &str) {
    if let Some(pid) = pid {
        signal(pid, sig);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// === RedisProcess ===

/// How long the checks of a Redis's state ([`RedisProcess::role`], [`info_field`]) wait for
/// its answer. A redis-server answers in microseconds, but a loaded machine can leave it
/// unscheduled for most of a second; a check that gave up sooner would read a slow answer as
/// none (no master at all, a command never sent).
pub const REDIS_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A real `redis-server` on a free loopback port. Killed by pid on drop.
pub struct RedisProcess {
    /// Its port.
    pub port: u16,
    args: Vec<String>,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts a master with extra `redis-server` arguments (e.g. `["--requirepass", "x"]`).
    pub fn start(extra: &[&str]) -> RedisProcess {
        let mut r = RedisProcess {
            port: free_port(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        r.spawn();
        r
    }

    /// Starts an instance that listens with TLS only: `args` must contain `--tls-port PORT`
    /// (PORT is replaced by the chosen port) and `--port 0`.
    pub fn start_tls(args: &[String]) -> RedisProcess {
        let port = free_port();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if a == "PORT" {
                    port.to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let mut r = RedisProcess {
            port,
            args,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        r.spawn();
        r
    }

    /// Starts a replica of `master`.
    pub fn start_replica(master: &RedisProcess, extra: &[&str]) -> RedisProcess {
        let port = master.port.to_string();
        let mut args = vec!["--replicaof", "127.0.0.1", port.as_str()];
        args.extend_from_slice(extra);
        RedisProcess::start(&args)
    }

    fn spawn(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let log = self.dir.path().join("redis.log");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        // Up to 10 s in 20 ms steps (blocking code: no tokio clock here).
        let mut tries = 0;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            tries += 1;
            assert!(
                tries < 500,
                "redis-server on {} did not start: {}",
                self.port,
                tail(&log, 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and dir, with the same arguments.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGSTOP (it stops answering but keeps its sockets).
    pub fn pause(&self) {
        signal_running(self.pid(), "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal_running(self.pid(), "-CONT");
    }

    /// A synchronous client (for test setup and checks).
    pub fn client(&self) -> redis::Connection {
        self.connect().expect("connect to redis")
    }

    /// [`RedisProcess::client`] for checks that poll: None when it cannot connect now.
    pub fn try_client(&self) -> Option<redis::Connection> {
        self.connect().ok()
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
    }

    /// `ACL SETUSER user rules...`.
    pub fn acl_setuser(&self, user: &str, rules: &[&str]) {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg(rules)
            .query(&mut self.client())
            .expect("ACL SETUSER");
    }

    /// The `role` field of `ROLE`: "master" or "slave" (None if unreachable, or no answer
    /// within [`REDIS_ANSWER_TIMEOUT`]).
    pub fn role(&self) -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let mut c = client
            .get_connection_with_timeout(REDIS_ANSWER_TIMEOUT)
            .ok()?;
        let _ = c.set_read_timeout(Some(REDIS_ANSWER_TIMEOUT));
        let v: redis::Value = redis::cmd("ROLE").query(&mut c).ok()?;
        match v {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                Some(redis::Value::SimpleString(s)) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.path().join("redis.log"), lines)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // A SIGSTOPped process must be continued to die cleanly on some kernels.
        signal_running(self.pid(), "-CONT");
        self.kill9();
    }
}

// === NodeProcess and Cluster ===

/// One `raft-sentinel run` process with its config and data dir.
pub struct NodeProcess {
    /// Node id.
    pub id: u64,
    /// Sentinel port.
    pub sentinel_port: u16,
    /// gRPC port.
    pub grpc_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// Metrics port.
    pub metrics_port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Client TLS for talking to it (when the cluster uses TLS).
    pub tls: Option<tls::TlsFiles>,
    /// Log filter passed to the process.
    pub log_filter: Option<String>,
    /// API password [`NodeProcess::client`] sends.
    pub api_password: Option<String>,
}

impl NodeProcess {
    /// gRPC endpoint `127.0.0.1:<port>`.
    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Peer address `127.0.0.1:<port>`.
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// Sentinel address `127.0.0.1:<port>`.
    pub fn sentinel_addr(&self) -> String {
        format!("127.0.0.1:{}", self.sentinel_port)
    }

    /// Whether the process is running (not killed by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the process (appending to its log).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open node log");
        let child = Command::new(BIN)
            .args(["run", "--config", &self.config.display().to_string()])
            .args(&self.extra_args)
            .env(
                "RAFT_SENTINEL_LOG",
                self.log_filter
                    .clone()
                    .or_else(|| std::env::var("RAFT_SENTINEL_LOG").ok())
                    .unwrap_or_else(|| "info,raft_rs=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn raft-sentinel");
        self.child = Some(child);
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT the node.
    pub fn pause(&self) {
        signal_running(self.pid(), "-STOP");
    }

    /// See [`NodeProcess::pause`].
    pub fn resume(&self) {
        signal_running(self.pid(), "-CONT");
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(c.id(), "-TERM");
        for tries in 0.. {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if tries >= 500 {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unreachable!("the loop only ends by returning")
    }

    /// A gRPC client (fails if the node is down).
    pub async fn client(&self) -> Result<ApiClient, tonic::transport::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", self.grpc_addr()))
                .expect("endpoint")
                .connect_timeout(Duration::from_millis(300))
                .timeout(Duration::from_secs(5));
        if let Some(t) = &self.tls {
            let read = |p: &PathBuf| std::fs::read(p).expect("read tls file");
            ep = ep.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(read(&t.ca)))
                    .identity(tonic::transport::Identity::from_pem(
                        read(&t.cert),
                        read(&t.key),
                    )),
            )?;
        }
        let cred = ApiCredential(
            self.api_password
                .as_ref()
                .map(|p| format!("Bearer {p}").parse().expect("ascii password")),
        );
        Ok(CoordinatorClient::with_interceptor(
            ep.connect().await?,
            cred,
        ))
    }

    /// `ClusterStatus` of this node, or None when unreachable.
    pub async fn status(&self) -> Option<pb::ClusterStatusReply> {
        let mut c = self.client().await.ok()?;
        c.cluster_status(pb::ClusterStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// `GetMasterDetail` of `name` on this node, or None when unreachable or unknown.
    pub async fn master_detail(&self, name: &str) -> Option<pb::MasterDetail> {
        let mut c = self.client().await.ok()?;
        c.get_master_detail(pb::GetMasterDetailRequest { name: name.into() })
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// The voters this node's `ClusterStatus` lists, or None when unreachable.
    pub async fn voter_ids(&self) -> Option<Vec<u64>> {
        let st = self.status().await?;
        Some(voter_ids(&st))
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// The ids of the voters a `ClusterStatus` lists.
pub fn voter_ids(st: &pb::ClusterStatusReply) -> Vec<u64> {
    st.members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.resume();
        self.kill9();
    }
}

/// Settings for a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// Number of nodes.
    pub nodes: usize,
    /// Raft tick.
    pub tick_ms: u64,
    /// Election ticks.
    pub election_ticks: usize,
    /// Heartbeat ticks.
    pub heartbeat_ticks: usize,
    /// Log entries before compaction.
    pub compact_threshold: u64,
    /// Extra TOML appended to every node's config (e.g. `[[masters]]` tables).
    pub extra_toml: String,
    /// Top-level keys put at the start of every node's config (before any table).
    pub top_toml: String,
    /// Mutual TLS on the peer and API ports with these files (shared by all nodes).
    pub tls: Option<tls::TlsFiles>,
    /// Log filter for the nodes (default `info,raft_rs=info`).
    pub log_filter: Option<String>,
    /// `[security] api_password_file` with this password (ctl passes it).
    pub api_password: Option<String>,
    /// `[security] api_open_reads`.
    pub api_open_reads: bool,
    /// `[security] cluster_secret_file` with this secret.
    pub cluster_secret: Option<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            nodes: 3,
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            compact_threshold: 1000,
            extra_toml: String::new(),
            top_toml: String::new(),
            tls: None,
            log_filter: None,
            api_password: None,
            api_open_reads: false,
            cluster_secret: None,
        }
    }
}

impl ClusterOpts {
    /// Three nodes on a 20 ms tick (elections within a second) watching `masters`.
    pub fn watching(masters: impl Into<String>) -> ClusterOpts {
        ClusterOpts {
            tick_ms: 20,
            extra_toml: masters.into(),
            ..ClusterOpts::default()
        }
    }
}

/// Several nodes of the real binary on loopback, sharing one temp dir.
pub struct Cluster {
    /// The nodes, index i holds node id i+1 (nodes added later are appended).
    pub nodes: Vec<NodeProcess>,
    /// Options used.
    pub opts: ClusterOpts,
    dir: TempDir,
}

impl Cluster {
    /// Writes configs and starts `opts.nodes` nodes.
    pub fn start(opts: ClusterOpts) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes: Vec<NodeProcess> = (1..=opts.nodes as u64)
            .map(|id| {
                let mut n = new_node(dir.path(), id);
                n.tls = opts.tls.clone();
                n.log_filter = opts.log_filter.clone();
                n.api_password = opts.api_password.clone();
                n
            })
            .collect();
        let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.peer_addr())).collect();
        for n in &nodes {
            write_config(n, &peers, &opts);
        }
        for n in &mut nodes {
            n.spawn();
        }
        Cluster { nodes, opts, dir }
    }

    /// Prepares a node that will join (started with `--join`), listing the current members
    /// and itself as peers. It is appended to `nodes` and started.
    pub fn spawn_joiner(&mut self, id: u64) -> usize {
        let mut n = new_node(self.dir.path(), id);
        n.tls = self.opts.tls.clone();
        n.log_filter = self.opts.log_filter.clone();
        n.api_password = self.opts.api_password.clone();
        let mut peers: Vec<(u64, String)> =
            self.nodes.iter().map(|n| (n.id, n.peer_addr())).collect();
        peers.push((id, n.peer_addr()));
        write_config(&n, &peers, &self.opts);
        n.extra_args = vec!["--join".into()];
        n.spawn();
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> &NodeProcess {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    /// Mutable access by id.
    pub fn node_mut(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Waits until every running node agrees on one leader, and returns its id.
    pub async fn wait_leader(&self, limit: Duration) -> u64 {
        eventually(limit, "all running nodes agree on a leader", || async {
            let mut leader = None;
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                let st = n.status().await?;
                if st.leader_id == 0 || leader.is_some_and(|l| l != st.leader_id) {
                    return None;
                }
                leader = Some(st.leader_id);
            }
            leader
        })
        .await
    }

    /// Election timeout in wall time.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.opts.tick_ms * self.opts.election_ticks as u64)
    }

    /// Every node's gRPC address, comma separated (for `ctl --endpoint`).
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.grpc_addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `raft-sentinel ctl --endpoint <all> <args>`; returns (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("ctl").args(["--endpoint", &self.endpoints()]);
        if self.opts.api_password.is_some() {
            cmd.args([
                "--password-file",
                &self.dir.path().join("api.secret").display().to_string(),
            ]);
        }
        if let Some(t) = &self.opts.tls {
            for (flag, p) in [("--ca", &t.ca), ("--cert", &t.cert), ("--key", &t.key)] {
                cmd.args([flag, &p.display().to_string()]);
            }
        }
        let out = cmd.args(args).output().expect("run ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!(
                    "===== node {} log (last 80 lines) =====\n{}",
                    n.id,
                    n.log_tail(80)
                );
            }
        }
    }
}

fn new_node(dir: &Path, id: u64) -> NodeProcess {
    let ndir = dir.join(format!("node{id}"));
    std::fs::create_dir_all(&ndir).expect("node dir");
    NodeProcess {
        id,
        sentinel_port: free_port(),
        grpc_port: free_port(),
        peer_port: free_port(),
        metrics_port: free_port(),
        config: ndir.join("config.toml"),
        data_dir: ndir.join("data"),
        log: ndir.join("node.log"),
        extra_args: Vec::new(),
        child: None,
        tls: None,
        log_filter: None,
        api_password: None,
    }
}

/// Writes a secret file shared by the nodes by rename: rewritten in place (for the next
/// node's config), a running node could read it truncated, empty.
pub fn write_secret(path: &Path, secret: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{secret}\n")).expect("write secret");
    std::fs::rename(&tmp, path).expect("rename secret");
}

fn write_config(n: &NodeProcess, peers: &[(u64, String)], o: &ClusterOpts) {
    let mut t = NodeToml::new(n.id, n.data_dir.display())
        .top(&o.top_toml)
        .listen(
            "127.0.0.1",
            [n.sentinel_port, n.grpc_port, n.peer_port, n.metrics_port],
        )
        .new_cluster()
        .raft("tick_ms", o.tick_ms)
        .raft("election_ticks", o.election_ticks)
        .raft("heartbeat_ticks", o.heartbeat_ticks)
        .raft("compact_threshold", o.compact_threshold);
    for (id, addr) in peers {
        t = t.peer(*id, addr);
    }
    if let Some(tls) = &o.tls {
        t = t.tls(&tls.cert, &tls.key, &tls.ca);
    }
    // Secret files live beside the node directories, in the cluster's temp dir.
    let shared = n
        .config
        .parent()
        .and_then(Path::parent)
        .expect("cluster dir");
    if let Some(p) = &o.api_password {
        let f = shared.join("api.secret");
        write_secret(&f, p);
        t = t.security_file("api_password_file", &f);
    }
    if o.api_open_reads {
        t = t.security("api_open_reads", true);
    }
    if let Some(sec) = &o.cluster_secret {
        let f = shared.join("cluster.secret");
        write_secret(&f, sec);
        t = t.security_file("cluster_secret_file", &f);
    }
    t.extra(&o.extra_toml).write(&n.config);
}

/// Metric names a query text (an alert rule, a dashboard) uses: every `raft_sentinel_*` word.
pub fn referenced_metrics(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("raft_sentinel_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// A plaintext gRPC channel to `addr` (5 s per call), for services other than the API
/// client's.
pub async fn plain_channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

/// `GetMaster` (local read) on one node.
pub async fn get_master(node: &NodeProcess, name: &str) -> Option<pb::GetMasterReply> {
    let mut c = node.client().await.ok()?;
    c.get_master(pb::GetMasterRequest {
        name: name.into(),
        consistency: pb::Consistency::Local as i32,
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

/// Waits (up to 10 s) until `node` reports a failover of `name` in progress.
pub async fn wait_failover_started(node: &NodeProcess, name: &str) {
    eventually(Duration::from_secs(10), "the failover started", || async {
        let r = get_master(node, name).await?;
        r.master?.failover_in_progress.then_some(())
    })
    .await
}

/// Waits until the committed state knows `n` replicas of `name` on every running node, and
/// every node's probes have seen the master and each replica answer (a run id from `INFO`,
/// connected, not down) with each replica reporting its link to the master up: monitoring
/// is up everywhere, and a failover could pick a replica, before a test breaks something.
pub async fn wait_monitored(c: &Cluster, name: &str, n: u32) {
    eventually(
        Duration::from_secs(20),
        "every node knows and has probed the master and its replicas",
        || async {
            for node in c.nodes.iter().filter(|n| n.is_running()) {
                if !probed(node, name, n).await? {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// Whether `node` knows `n` replicas of `name` and its probes have answers from all of them
/// and from the master (None when the node does not answer).
async fn probed(node: &NodeProcess, name: &str, n: u32) -> Option<bool> {
    let d = node.master_detail(name).await?;
    let m = d.master?;
    let master = format!("{}:{}", m.host, m.port);
    let answers = |i: &pb::ReplicaDetail| {
        !i.run_id.is_empty()
            && !i
                .flags
                .iter()
                .any(|f| matches!(f.as_str(), "disconnected" | "s_down" | "o_down"))
    };
    Some(
        m.num_replicas == n
            && d.replicas.len() == n as usize
            && d.master_instance.as_ref().is_some_and(answers)
            && d.replicas
                .iter()
                .all(|r| answers(r) && r.master_link_up && r.following == master),
    )
}
