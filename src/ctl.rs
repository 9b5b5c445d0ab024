//! `raft-sentinel ctl`: an operator client of the gRPC API.
//!
//! Tries each `--endpoint` in turn when a node is down, and follows the leader hint of an
//! `UNAVAILABLE` reply for operations only the leader can do.
//!
//! Exit codes: 0 success, 1 other failure, 3 no node reachable or no leader,
//! 4 not found, 5 invalid argument or refused by the cluster's current state,
//! 6 credentials missing or refused.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use raft_sentinel::api::grpc::LEADER_ADDR_HEADER;
use raft_sentinel::pb::api as pb;
use raft_sentinel::pb::api::coordinator_client::CoordinatorClient;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

/// Environment variable holding the API password when `--password-file` is not given.
pub const PASSWORD_ENV: &str = "RAFT_SENTINEL_PASSWORD";

/// A client that sends the credential with every call.
type Client = CoordinatorClient<InterceptedService<Channel, Credential>>;

/// Adds `authorization` to each request (nothing when no password was given).
#[derive(Clone)]
struct Credential(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Credential {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Arguments of `ctl`.
#[derive(Args)]
pub struct CtlArgs {
    /// gRPC addresses of nodes (host:port), comma separated or repeated; tried in order.
    #[arg(long, short, value_delimiter = ',', default_value = "127.0.0.1:7700")]
    endpoint: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// CA certificate (PEM) of a cluster with TLS; enables TLS.
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) signed by the cluster CA.
    #[arg(long, requires = "ca")]
    cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, requires = "ca")]
    key: Option<std::path::PathBuf>,
    /// File holding the API password (`api_password` or, by default, `requirepass` of the
    /// nodes). Without it, the password is read from the environment variable
    /// RAFT_SENTINEL_PASSWORD when set.
    #[arg(long, global = true)]
    password_file: Option<std::path::PathBuf>,
    /// User name sent with the password (the nodes know only `default`).
    #[arg(long, global = true)]
    user: Option<String>,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Cluster membership, roles, leader, term and indexes.
    Status,
    /// Every monitored master.
    Masters,
    /// Current address of one master.
    GetMaster {
        /// Master name.
        name: String,
        /// Confirm with the leader first (fails in a minority partition).
        #[arg(long)]
        linearizable: bool,
    },
    /// Start monitoring a master.
    Monitor(MonitorArgs),
    /// Stop monitoring a master.
    Remove {
        /// Master name.
        name: String,
    },
    /// Add a coordinator node (it must be running, started on an empty data dir).
    AddNode {
        /// Node id.
        #[arg(long)]
        id: u64,
        /// Its peer address, host:port.
        #[arg(long)]
        addr: String,
    },
    /// Remove a coordinator node.
    RemoveNode {
        /// Node id.
        #[arg(long)]
        id: u64,
    },
    /// Re-admit a node that lost its data dir: demoted to learner, promoted to voter once it
    /// has caught up (it must be running again, on an empty data dir).
    ReplaceNode {
        /// Node id.
        #[arg(long)]
        id: u64,
        /// Its peer address, host:port (only when it is no longer a member).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Hand Raft leadership to another voter.
    TransferLeader {
        /// Target node id.
        #[arg(long)]
        to: u64,
    },
    /// Everything about one master: replicas, observations, failover state, history.
    Master {
        /// Master name.
        name: String,
    },
    /// Stream master switches; reconnects to the next endpoint and resumes without a gap.
    Watch {
        /// Masters to watch (default: all).
        names: Vec<String>,
        /// Resume after this epoch instead of starting with the current addresses.
        #[arg(long, default_value_t = 0)]
        from_epoch: u64,
        /// Exit after this many switches (0: run until interrupted).
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
    /// Force a failover (Sentinel's SENTINEL FAILOVER).
    Failover {
        /// Master name.
        name: String,
    },
    /// Zero-loss switchover of a healthy master (Redis FAILOVER TO).
    Switchover {
        /// Master name.
        name: String,
        /// Replica to promote (host:port); default: the leader chooses.
        #[arg(long)]
        target: Option<String>,
    },
    /// Change options of a master: KEY VALUE pairs with Sentinel's names
    /// (down-after-milliseconds, failover-timeout, parallel-syncs, quorum, auth-pass, ...).
    Set {
        /// Master name.
        name: String,
        /// KEY VALUE [KEY VALUE ...]
        #[arg(num_args = 2.., required = true)]
        pairs: Vec<String>,
    },
    /// Forget replicas, observations and failover state of masters matching a glob.
    Reset {
        /// Glob pattern.
        pattern: String,
    },
    /// No automatic failover for this master until resume.
    Pause {
        /// Master name.
        name: String,
    },
    /// Allow automatic failover again.
    Resume {
        /// Master name.
        name: String,
    },
    /// Measure latency and rate against the first endpoint: proposals (MONITOR/REMOVE of a
    /// scratch master) or GetMaster reads; prints count, p50, p99, max (ms) and requests/s.
    Bench {
        /// Number of requests in all.
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// What to measure.
        #[arg(long, value_enum, default_value_t = BenchOp::Propose)]
        op: BenchOp,
        /// Requests in flight at once (each from its own task, sharing one connection).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Master to read for the GetMaster operations.
        #[arg(long, default_value = "mymaster")]
        master: String,
    },
}

/// Arguments of `ctl monitor`.
#[derive(Args)]
struct MonitorArgs {
    /// Master name.
    name: String,
    /// Host.
    host: String,
    /// Port.
    port: u32,
    /// Nodes that must see it down for a failover.
    quorum: u32,
    /// Subjective-down threshold (ms; default 5000).
    #[arg(long, default_value_t = 0)]
    down_after_ms: u64,
    /// Failover timeout (ms; default 60000).
    #[arg(long, default_value_t = 0)]
    failover_timeout_ms: u64,
    /// Replicas resyncing at once (default 1).
    #[arg(long, default_value_t = 0)]
    parallel_syncs: u32,
}

/// Runs one ctl command and maps the outcome to an exit code.
pub async fn run(args: CtlArgs) -> ExitCode {
    // A bad --password-file is an error of its own, not an unreachable node.
    if let Err(e) = credential(&args) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match execute(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<Status>()
                .is_some_and(|s| s.code() == Code::Unauthenticated)
            {
                eprintln!(
                    "the node requires the API password: --password-file FILE or {PASSWORD_ENV}"
                );
            }
            let code = exit_code(&e);
            ExitCode::from(code)
        }
    }
}

/// No endpoint could answer; the context of the last endpoint's error.
#[derive(Debug, thiserror::Error)]
#[error("no node reachable that could answer")]
struct Unreachable;

/// The exit code of an error (see the module docs), from its type, never its text.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(s) = e.downcast_ref::<Status>() {
        return match s.code() {
            Code::Unavailable | Code::DeadlineExceeded => 3,
            Code::NotFound => 4,
            Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => 5,
            Code::Unauthenticated => 6,
            _ => 1,
        };
    }
    if e.downcast_ref::<Unreachable>().is_some() {
        3
    } else {
        1
    }
}

/// The `authorization` value from --password-file or the environment, if any.
fn credential(args: &CtlArgs) -> anyhow::Result<Credential> {
    let password = match &args.password_file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --password-file {}", p.display()))?;
            Some(text.trim_end_matches(['\r', '\n']).to_string())
        }
        None => std::env::var(PASSWORD_ENV).ok(),
    }
    .filter(|p| !p.is_empty());
    let Some(password) = password else {
        if args.user.is_some() {
            anyhow::bail!("--user needs a password: --password-file or {PASSWORD_ENV}");
        }
        return Ok(Credential(None));
    };
    use base64::Engine as _;
    let value = match &args.user {
        Some(u) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{password}"))
        ),
        None => format!("Bearer {password}"),
    };
    // Not echoed in the error: it would print the secret.
    let value = value.parse().map_err(|_| {
        anyhow!("the password holds characters that cannot be sent (use printable ASCII)")
    })?;
    Ok(Credential(Some(value)))
}

async fn connect(args: &CtlArgs, addr: &str, timeout: Duration) -> anyhow::Result<Client> {
    let scheme = if args.ca.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .with_context(|| format!("bad endpoint '{addr}'"))?
        .connect_timeout(Duration::from_millis(1000))
        .timeout(timeout);
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .identity(Identity::from_pem(read(cert)?, read(key)?));
        ep = ep.tls_config(tls).context("tls settings")?;
    }
    let ch = ep
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    Ok(CoordinatorClient::with_interceptor(ch, credential(args)?))
}

/// Calls `f` on the first reachable endpoint, following leader hints (at most 3 hops).
async fn call<T, F, Fut>(args: &CtlArgs, mut f: F) -> anyhow::Result<T>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut queue: Vec<String> = args.endpoint.clone();
    let mut hops = 0;
    let mut last_err: Option<anyhow::Error> = None;
    while !queue.is_empty() {
        let addr = queue.remove(0);
        let client = match connect(args, &addr, timeout).await {
            Ok(c) => c,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        match f(client).await {
            Ok(v) => return Ok(v),
            Err(st) if st.code() == Code::Unavailable => {
                let hint = st
                    .metadata()
                    .get(LEADER_ADDR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match hint {
                    Some(h) if hops < 3 && h != addr => {
                        hops += 1;
                        queue.insert(0, h);
                    }
                    _ => {}
                }
                last_err = Some(anyhow::Error::new(st).context(format!("{addr} unavailable")));
            }
            Err(st) => return Err(anyhow::Error::new(st)),
        }
    }
    Err(last_err
        .unwrap_or_else(|| anyhow!("no endpoint given"))
        .context(Unreachable))
}

/// One unary call through [`call`]: `f` sends `req` on a client.
async fn rpc<Req, T, F, Fut>(args: &CtlArgs, req: Req, f: F) -> anyhow::Result<T>
where
    Req: Clone,
    F: Fn(Client, Req) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    call(args, |c| {
        let sent = f(c, req.clone());
        async move { sent.await.map(tonic::Response::into_inner) }
    })
    .await
}

async fn execute(args: &CtlArgs) -> anyhow::Result<()> {
    match &args.cmd {
        CtlCmd::Status => status(args).await,
        CtlCmd::Masters => masters(args).await,
        CtlCmd::GetMaster { name, linearizable } => get_master(args, name, *linearizable).await,
        CtlCmd::Monitor(m) => monitor(args, m).await,
        CtlCmd::Remove { name } => remove(args, name).await,
        CtlCmd::AddNode { id, addr } => add_node(args, *id, addr).await,
        CtlCmd::RemoveNode { id } => remove_node(args, *id).await,
        CtlCmd::ReplaceNode { id, addr } => replace_node(args, *id, addr.as_deref()).await,
        CtlCmd::TransferLeader { to } => transfer_leader(args, *to).await,
        CtlCmd::Master { name } => master(args, name).await,
        CtlCmd::Watch {
            names,
            from_epoch,
            count,
        } => watch(args, names, *from_epoch, *count).await,
        CtlCmd::Failover { name } => failover(args, name).await,
        CtlCmd::Switchover { name, target } => switchover(args, name, target.as_deref()).await,
        CtlCmd::Set { name, pairs } => set(args, name, pairs).await,
        CtlCmd::Reset { pattern } => reset(args, pattern).await,
        CtlCmd::Pause { name } => pause(args, name).await,
        CtlCmd::Resume { name } => resume(args, name).await,
        CtlCmd::Bench {
            count,
            op,
            concurrency,
            master,
        } => bench(args, *count, *op, *concurrency, master).await,
    }
}

async fn status(args: &CtlArgs) -> anyhow::Result<()> {
    let req = pb::ClusterStatusRequest {};
    let st = rpc(
        args,
        req,
        |mut c, r| async move { c.cluster_status(r).await },
    )
    .await?;
    show(args, &st, print_status)
}

async fn masters(args: &CtlArgs) -> anyhow::Result<()> {
    let req = pb::ListMastersRequest {};
    let r = rpc(args, req, |mut c, r| async move { c.list_masters(r).await }).await?;
    show(args, &r, print_masters)
}

async fn get_master(args: &CtlArgs, name: &str, linearizable: bool) -> anyhow::Result<()> {
    let consistency = if linearizable {
        pb::Consistency::Linearizable
    } else {
        pb::Consistency::Local
    };
    let req = pb::GetMasterRequest {
        name: name.into(),
        consistency: consistency.into(),
    };
    let r = rpc(args, req, |mut c, r| async move { c.get_master(r).await }).await?;
    let m = r
        .master
        .as_ref()
        .ok_or_else(|| anyhow!("reply without master"))?;
    if args.json {
        return print_json(&r);
    }
    println!(
        "{}:{}  epoch {}  applied {}",
        m.host, m.port, m.config_epoch, r.applied_index
    );
    Ok(())
}

async fn monitor(args: &CtlArgs, m: &MonitorArgs) -> anyhow::Result<()> {
    let req = pb::MonitorRequest {
        name: m.name.clone(),
        host: m.host.clone(),
        port: m.port,
        quorum: m.quorum,
        down_after_ms: m.down_after_ms,
        failover_timeout_ms: m.failover_timeout_ms,
        parallel_syncs: m.parallel_syncs,
        ..Default::default()
    };
    let r = rpc(args, req, |mut c, r| async move { c.monitor(r).await }).await?;
    ok(args, json!({"ok": true, "applied_index": r.applied_index}))
}

async fn remove(args: &CtlArgs, name: &str) -> anyhow::Result<()> {
    let req = pb::RemoveRequest { name: name.into() };
    let r = rpc(args, req, |mut c, r| async move { c.remove(r).await }).await?;
    ok(args, json!({"ok": true, "applied_index": r.applied_index}))
}

async fn add_node(args: &CtlArgs, id: u64, addr: &str) -> anyhow::Result<()> {
    let req = pb::AddNodeRequest {
        id,
        peer_addr: addr.into(),
    };
    rpc(args, req, |mut c, r| async move { c.add_node(r).await }).await?;
    ok(args, json!({"ok": true, "added": id}))
}

async fn remove_node(args: &CtlArgs, id: u64) -> anyhow::Result<()> {
    let req = pb::RemoveNodeRequest { id };
    rpc(args, req, |mut c, r| async move { c.remove_node(r).await }).await?;
    ok(args, json!({"ok": true, "removed": id}))
}

async fn replace_node(args: &CtlArgs, id: u64, addr: Option<&str>) -> anyhow::Result<()> {
    let req = pb::ReplaceNodeRequest {
        id,
        peer_addr: addr.unwrap_or_default().into(),
    };
    rpc(args, req, |mut c, r| async move { c.replace_node(r).await }).await?;
    ok(args, json!({"ok": true, "replaced": id}))
}

async fn transfer_leader(args: &CtlArgs, to: u64) -> anyhow::Result<()> {
    let req = pb::TransferLeaderRequest { to };
    let r = rpc(
        args,
        req,
        |mut c, r| async move { c.transfer_leader(r).await },
    )
    .await?;
    ok(args, json!({"ok": true, "leader_id": r.leader_id}))
}

async fn master(args: &CtlArgs, name: &str) -> anyhow::Result<()> {
    let req = pb::GetMasterDetailRequest { name: name.into() };
    let d = rpc(
        args,
        req,
        |mut c, r| async move { c.get_master_detail(r).await },
    )
    .await?;
    show(args, &d, print_detail)
}

async fn failover(args: &CtlArgs, name: &str) -> anyhow::Result<()> {
    let req = pb::FailoverRequest { name: name.into() };
    let r = rpc(args, req, |mut c, r| async move { c.failover(r).await }).await?;
    ok(args, json!({"ok": true, "epoch": r.epoch}))
}

async fn switchover(args: &CtlArgs, name: &str, target: Option<&str>) -> anyhow::Result<()> {
    let req = pb::SwitchoverRequest {
        name: name.into(),
        target: target.unwrap_or_default().into(),
    };
    let r = rpc(args, req, |mut c, r| async move { c.switchover(r).await }).await?;
    ok(args, json!({"ok": true, "epoch": r.epoch}))
}

async fn set(args: &CtlArgs, name: &str, pairs: &[String]) -> anyhow::Result<()> {
    if !pairs.len().is_multiple_of(2) {
        anyhow::bail!(
            "set takes KEY VALUE pairs; '{}' has no value",
            pairs[pairs.len() - 1]
        );
    }
    let options = pairs
        .chunks(2)
        .map(|kv| pb::SetOption {
            key: kv[0].clone(),
            value: kv[1].clone(),
        })
        .collect();
    let req = pb::SetRequest {
        name: name.into(),
        options,
    };
    rpc(args, req, |mut c, r| async move { c.set(r).await }).await?;
    ok(args, json!({"ok": true}))
}

async fn reset(args: &CtlArgs, pattern: &str) -> anyhow::Result<()> {
    let req = pb::ResetRequest {
        pattern: pattern.into(),
    };
    let r = rpc(args, req, |mut c, r| async move { c.reset(r).await }).await?;
    if args.json {
        println!("{}", json!({"ok": true, "count": r.count}));
    } else {
        println!("reset {} master(s)", r.count);
    }
    Ok(())
}

async fn pause(args: &CtlArgs, name: &str) -> anyhow::Result<()> {
    let req = pb::PauseRequest { name: name.into() };
    rpc(args, req, |mut c, r| async move { c.pause(r).await }).await?;
    ok(args, json!({"ok": true, "paused": name}))
}

async fn resume(args: &CtlArgs, name: &str) -> anyhow::Result<()> {
    let req = pb::ResumeRequest { name: name.into() };
    rpc(args, req, |mut c, r| async move { c.resume(r).await }).await?;
    ok(args, json!({"ok": true, "resumed": name}))
}

/// One line of JSON. Through `Value`, whose map sorts the keys: the order `--json` has always
/// printed, whatever the field order of the message.
fn json_line<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_value(v)?.to_string())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", json_line(v)?);
    Ok(())
}

/// A reply as JSON with `--json`, else as `table` lays it out.
fn show<T: serde::Serialize>(args: &CtlArgs, reply: &T, table: fn(&T)) -> anyhow::Result<()> {
    if args.json {
        return print_json(reply);
    }
    table(reply);
    Ok(())
}

/// `OK`, or with `--json` the outcome `v` of a command.
fn ok(args: &CtlArgs, v: serde_json::Value) -> anyhow::Result<()> {
    if args.json {
        println!("{v}");
    } else {
        println!("OK");
    }
    Ok(())
}

fn print_status(st: &pb::ClusterStatusReply) {
    println!(
        "node {}  role {}  leader {}  term {}  commit {}  applied {}  epoch {}",
        st.node_id,
        st.role().as_str_name().to_ascii_lowercase(),
        st.leader_id,
        st.term,
        st.commit_index,
        st.applied_index,
        st.current_epoch
    );
    if st.awaiting_replacement {
        println!(
            "node {} lost its data dir and does not vote: run `ctl replace-node --id {}`",
            st.node_id, st.node_id
        );
    }
    println!(
        "{:<4} {:<8} {:<22} {:<22} {:<22}",
        "ID", "KIND", "PEER", "GRPC", "SENTINEL"
    );
    for m in &st.members {
        println!(
            "{:<4} {:<8} {:<22} {:<22} {:<22}",
            m.id,
            if m.voter { "voter" } else { "learner" },
            m.peer_addr,
            m.grpc_addr,
            m.sentinel_addr
        );
    }
}

fn print_masters(r: &pb::ListMastersReply) {
    println!(
        "{:<20} {:<22} {:<6} {:<7} {:<6} FLAGS",
        "NAME", "ADDR", "EPOCH", "QUORUM", "REPLS"
    );
    for m in &r.masters {
        println!(
            "{:<20} {:<22} {:<6} {:<7} {:<6} {}",
            m.name,
            format!("{}:{}", m.host, m.port),
            m.config_epoch,
            m.quorum,
            m.num_replicas,
            flags(m)
        );
    }
}

/// What `ctl bench` measures.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BenchOp {
    /// Proposals that change the state (alternating MONITOR and REMOVE of a scratch master).
    Propose,
    /// GetMaster answered from the node's applied state.
    GetLocal,
    /// GetMaster confirmed through ReadIndex.
    GetLinearizable,
}

async fn bench(
    args: &CtlArgs,
    count: usize,
    op: BenchOp,
    concurrency: usize,
    master: &str,
) -> anyhow::Result<()> {
    if count == 0 || concurrency == 0 {
        anyhow::bail!("--count and --concurrency must be at least 1");
    }
    if matches!(op, BenchOp::Propose) && concurrency > 1 {
        // Concurrent MONITOR/REMOVE of one name would race into refusals.
        anyhow::bail!("proposals are measured one at a time (--concurrency 1)");
    }
    let addr = args
        .endpoint
        .first()
        .ok_or_else(|| anyhow!("no endpoint"))?;
    let client = connect(args, addr, Duration::from_millis(args.timeout_ms)).await?;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut c = client.clone();
        let n = count / concurrency + usize::from(w < count % concurrency);
        let master = master.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let t = tokio::time::Instant::now();
                let res = match op {
                    BenchOp::Propose if i % 2 == 0 => c
                        .monitor(pb::MonitorRequest {
                            name: "__bench".into(),
                            host: "127.0.0.1".into(),
                            port: 1,
                            quorum: 1,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    BenchOp::Propose => c
                        .remove(pb::RemoveRequest {
                            name: "__bench".into(),
                        })
                        .await
                        .map(|_| ()),
                    BenchOp::GetLocal | BenchOp::GetLinearizable => {
                        let consistency = if matches!(op, BenchOp::GetLinearizable) {
                            pb::Consistency::Linearizable
                        } else {
                            pb::Consistency::Local
                        };
                        c.get_master(pb::GetMasterRequest {
                            name: master.clone(),
                            consistency: consistency.into(),
                        })
                        .await
                        .map(|_| ())
                    }
                };
                res.map_err(|e| anyhow::Error::new(e).context(format!("request {i}")))?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(count);
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let rate = lat.len() as f64 / secs;
    if args.json {
        println!(
            "{}",
            json!({"op": format!("{op:?}"), "count": count, "concurrency": concurrency, "p50_ms": pct(0.50),
                   "p99_ms": pct(0.99), "max_ms": lat[lat.len() - 1], "per_second": rate})
        );
    } else {
        println!(
            "{op:?}: {count} requests, concurrency {concurrency}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  {rate:.0} req/s",
            pct(0.50),
            pct(0.99),
            lat[lat.len() - 1]
        );
    }
    Ok(())
}

/// Streams switches, reconnecting through the endpoint list and resuming from the last
/// epoch received, so no switch is missed or repeated across a node failure.
async fn watch(
    args: &CtlArgs,
    names: &[String],
    from_epoch: u64,
    count: usize,
) -> anyhow::Result<()> {
    let mut last_epoch = from_epoch;
    let mut seen = 0usize;
    let mut failures = 0u32;
    loop {
        let mut stream = None;
        for addr in &args.endpoint {
            let Ok(mut c) = connect(args, addr, Duration::from_secs(24 * 3600)).await else {
                continue;
            };
            let req = pb::WatchMastersRequest {
                names: names.to_vec(),
                from_epoch: last_epoch,
            };
            match c.watch_masters(req).await {
                Ok(s) => {
                    stream = Some(s.into_inner());
                    break;
                }
                Err(st)
                    if matches!(
                        st.code(),
                        Code::NotFound
                            | Code::InvalidArgument
                            | Code::OutOfRange
                            | Code::Unauthenticated
                    ) =>
                {
                    return Err(anyhow::Error::new(st));
                }
                Err(_) => continue,
            }
        }
        let Some(mut stream) = stream else {
            failures += 1;
            if failures > 20 {
                anyhow::bail!("no node reachable to watch");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        failures = 0;
        // A closed or failed stream means the node went away: reconnect and resume.
        while let Ok(Some(ch)) = stream.message().await {
            let switch = ch.kind() == pb::master_change::Kind::Switch;
            // The stream is in commit order; switches of different masters can commit out of
            // epoch order, so resume from the last switch received, not the highest epoch.
            last_epoch = if switch {
                ch.epoch
            } else {
                last_epoch.max(ch.epoch)
            };
            if args.json {
                print_json(&ch)?;
            } else if switch {
                println!(
                    "+switch-master {} {} {} {} {}  epoch {}",
                    ch.name, ch.old_host, ch.old_port, ch.host, ch.port, ch.epoch
                );
            } else {
                println!("{} {}:{}  epoch {}", ch.name, ch.host, ch.port, ch.epoch);
            }
            if switch {
                seen += 1;
                if count > 0 && seen >= count {
                    return Ok(());
                }
            }
        }
    }
}

fn print_detail(d: &pb::MasterDetail) {
    let m = d.master.clone().unwrap_or_default();
    println!(
        "{} at {}:{}  epoch {}  quorum {}  {}",
        m.name,
        m.host,
        m.port,
        m.config_epoch,
        m.quorum,
        flags(&m)
    );
    println!(
        "down-after {} ms  failover-timeout {} ms  parallel-syncs {}  budget {} per {} ms",
        d.down_after_ms,
        d.failover_timeout_ms,
        d.parallel_syncs,
        d.failover_budget,
        d.failover_budget_window_ms
    );
    println!(
        "{:<22} {:<26} {:>12} {:>4} {:<22}",
        "INSTANCE", "FLAGS", "OFFSET", "PRIO", "FOLLOWING"
    );
    for r in d.master_instance.iter().chain(d.replicas.iter()) {
        println!(
            "{:<22} {:<26} {:>12} {:>4} {:<22}",
            r.addr,
            r.flags.join(","),
            r.repl_offset,
            r.priority,
            r.following
        );
    }
    for o in &d.observations {
        println!(
            "node {} sees it {} ({})",
            o.node_id,
            if o.down { "down" } else { "up" },
            o.reason
        );
    }
    if let Some(f) = &d.failover {
        println!(
            "failover {}: epoch {} candidate {} ({})",
            f.phase, f.epoch, f.candidate, f.reason
        );
    }
    for h in &d.history {
        println!(
            "epoch {:<4} {:<10} {} -> {}  {}  promoted after {} ms",
            h.epoch, h.reason, h.from, h.to, h.outcome, h.promotion_ms
        );
    }
}

fn flags(m: &pb::MasterAddr) -> String {
    let mut f = Vec::new();
    if m.odown {
        f.push("o_down");
    }
    if m.failover_in_progress {
        f.push("failover_in_progress");
    }
    if m.paused {
        f.push("paused");
    }
    f.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(name: &str) -> pb::MasterAddr {
        pb::MasterAddr {
            name: name.into(),
            host: "h\u{e9}".into(),
            port: 6379,
            config_epoch: 8,
            quorum: 2,
            odown: true,
            paused: false,
            failover_in_progress: true,
            num_replicas: 3,
        }
    }

    fn replica(addr: &str) -> pb::ReplicaDetail {
        pb::ReplicaDetail {
            addr: addr.into(),
            flags: vec!["slave".into(), "s_down".into()],
            repl_offset: -5,
            priority: 100,
            master_link_up: true,
            info_age_ms: 12,
            run_id: "r".into(),
            last_error: "e".into(),
            following: "f:1".into(),
        }
    }

    fn status(role: i32) -> pb::ClusterStatusReply {
        let member = pb::Member {
            id: 1,
            voter: true,
            peer_addr: "127.0.0.1:1".into(),
            grpc_addr: "g:1".into(),
            sentinel_addr: "s:1".into(),
            run_id: "abc\"d".into(),
            matched: 9,
            recent_active: true,
        };
        let learner = pb::Member {
            id: 4,
            voter: false,
            ..Default::default()
        };
        pb::ClusterStatusReply {
            node_id: 2,
            role,
            leader_id: 3,
            term: 7,
            commit_index: 11,
            applied_index: 10,
            first_index: 4,
            last_index: 12,
            members: vec![member, learner],
            voters_outgoing: vec![1, 2],
            leader_contact: true,
            current_epoch: 5,
            awaiting_replacement: true,
            cluster_version: 3,
        }
    }

    fn detail() -> pb::MasterDetail {
        let failover = pb::FailoverState {
            phase: "promoting".into(),
            epoch: 4,
            candidate: "c:1".into(),
            reason: "odown".into(),
            leader_id: 2,
            started_at_ms: 100,
            reconf: vec![pb::ReconfReplica {
                addr: "x:1".into(),
                stage: "sent".into(),
            }],
        };
        let record = pb::FailoverRecord {
            epoch: 3,
            reason: "forced".into(),
            from: "a:1".into(),
            to: "b:2".into(),
            leader_id: 1,
            started_at_ms: 1,
            promoted_at_ms: 2,
            ended_at_ms: 3,
            outcome: "ended".into(),
            promotion_ms: 1,
        };
        pb::MasterDetail {
            master: Some(master("d")),
            down_after_ms: 5000,
            failover_timeout_ms: 60000,
            parallel_syncs: 1,
            failover_budget: 3,
            failover_budget_window_ms: 3600000,
            auth_user: "u".into(),
            tls: true,
            replicas: vec![replica("r1:1"), replica("r2:2")],
            observations: vec![pb::Observation {
                node_id: 1,
                down: true,
                reason: "timeout".into(),
                at_ms: 99,
            }],
            failover: Some(failover),
            history: vec![record],
            master_instance: Some(replica("m:1")),
            applied_index: 50,
            current_epoch: 4,
        }
    }

    fn change(kind: pb::master_change::Kind) -> pb::MasterChange {
        pb::MasterChange {
            kind: kind.into(),
            name: "n".into(),
            old_host: "o".into(),
            old_port: 1,
            host: "h".into(),
            port: 2,
            epoch: 3,
            index: 4,
            switched_at_ms: 5,
        }
    }

    /// `--json` prints exactly what it printed when the JSON was written out by hand (these
    /// lines were recorded from that version): key names, key order, enums by name.
    #[test]
    fn json_output_is_unchanged() {
        let list = pb::ListMastersReply {
            masters: vec![master("a"), master("b")],
            applied_index: 77,
            current_epoch: 9,
        };
        let get = pb::GetMasterReply {
            master: Some(master("m")),
            leader_id: 1,
            applied_index: 2,
            current_epoch: 3,
        };
        let got = [
            json_line(&status(pb::Role::PreCandidate.into())),
            json_line(&list),
            json_line(&get),
            json_line(&detail()),
            json_line(&pb::MasterDetail::default()),
            json_line(&change(pb::master_change::Kind::Switch)),
            json_line(&change(pb::master_change::Kind::Current)),
            json_line(&status(99)),
        ];
        let want = [
            r#"{"applied_index":10,"awaiting_replacement":true,"cluster_version":3,"commit_index":11,"current_epoch":5,"first_index":4,"last_index":12,"leader_contact":true,"leader_id":3,"members":[{"grpc_addr":"g:1","id":1,"matched":9,"peer_addr":"127.0.0.1:1","recent_active":true,"run_id":"abc\"d","sentinel_addr":"s:1","voter":true},{"grpc_addr":"","id":4,"matched":0,"peer_addr":"","recent_active":false,"run_id":"","sentinel_addr":"","voter":false}],"node_id":2,"role":"pre_candidate","term":7,"voters_outgoing":[1,2]}"#,
            r#"{"applied_index":77,"current_epoch":9,"masters":[{"config_epoch":8,"failover_in_progress":true,"host":"hé","name":"a","num_replicas":3,"odown":true,"paused":false,"port":6379,"quorum":2},{"config_epoch":8,"failover_in_progress":true,"host":"hé","name":"b","num_replicas":3,"odown":true,"paused":false,"port":6379,"quorum":2}]}"#,
            r#"{"applied_index":2,"current_epoch":3,"leader_id":1,"master":{"config_epoch":8,"failover_in_progress":true,"host":"hé","name":"m","num_replicas":3,"odown":true,"paused":false,"port":6379,"quorum":2}}"#,
            r#"{"applied_index":50,"auth_user":"u","current_epoch":4,"down_after_ms":5000,"failover":{"candidate":"c:1","epoch":4,"leader_id":2,"phase":"promoting","reason":"odown","reconf":[{"addr":"x:1","stage":"sent"}],"started_at_ms":100},"failover_budget":3,"failover_budget_window_ms":3600000,"failover_timeout_ms":60000,"history":[{"ended_at_ms":3,"epoch":3,"from":"a:1","leader_id":1,"outcome":"ended","promoted_at_ms":2,"promotion_ms":1,"reason":"forced","started_at_ms":1,"to":"b:2"}],"master":{"config_epoch":8,"failover_in_progress":true,"host":"hé","name":"d","num_replicas":3,"odown":true,"paused":false,"port":6379,"quorum":2},"master_instance":{"addr":"m:1","flags":["slave","s_down"],"following":"f:1","info_age_ms":12,"last_error":"e","master_link_up":true,"priority":100,"repl_offset":-5,"run_id":"r"},"observations":[{"at_ms":99,"down":true,"node_id":1,"reason":"timeout"}],"parallel_syncs":1,"replicas":[{"addr":"r1:1","flags":["slave","s_down"],"following":"f:1","info_age_ms":12,"last_error":"e","master_link_up":true,"priority":100,"repl_offset":-5,"run_id":"r"},{"addr":"r2:2","flags":["slave","s_down"],"following":"f:1","info_age_ms":12,"last_error":"e","master_link_up":true,"priority":100,"repl_offset":-5,"run_id":"r"}],"tls":true}"#,
            r#"{"applied_index":0,"auth_user":"","current_epoch":0,"down_after_ms":0,"failover":null,"failover_budget":0,"failover_budget_window_ms":0,"failover_timeout_ms":0,"history":[],"master":{"config_epoch":0,"failover_in_progress":false,"host":"","name":"","num_replicas":0,"odown":false,"paused":false,"port":0,"quorum":0},"master_instance":null,"observations":[],"parallel_syncs":0,"replicas":[],"tls":false}"#,
            r#"{"epoch":3,"host":"h","index":4,"kind":"switch","name":"n","old_host":"o","old_port":1,"port":2,"switched_at_ms":5}"#,
            r#"{"epoch":3,"host":"h","index":4,"kind":"current","name":"n","old_host":"o","old_port":1,"port":2,"switched_at_ms":5}"#,
            r#"{"applied_index":10,"awaiting_replacement":true,"cluster_version":3,"commit_index":11,"current_epoch":5,"first_index":4,"last_index":12,"leader_contact":true,"leader_id":3,"members":[{"grpc_addr":"g:1","id":1,"matched":9,"peer_addr":"127.0.0.1:1","recent_active":true,"run_id":"abc\"d","sentinel_addr":"s:1","voter":true},{"grpc_addr":"","id":4,"matched":0,"peer_addr":"","recent_active":false,"run_id":"","sentinel_addr":"","voter":false}],"node_id":2,"role":"role_unspecified","term":7,"voters_outgoing":[1,2]}"#,
        ];
        for (got, want) in got.into_iter().zip(want) {
            assert_eq!(got.unwrap(), want);
        }
    }
}
