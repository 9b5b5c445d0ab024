//! `SENTINEL` subcommands.
//!
//! Reads answer from this node's applied state. Writes (MONITOR, SET, REMOVE, RESET,
//! FAILOVER) are proposed through the Raft log and answered once applied on this node, so a
//! setup script can be sent to any node, or to all of them (an identical MONITOR is `+OK`).
//!
//! Stale guard: a node that has not heard from a Raft leader within an election timeout
//! cannot vouch for its state, so it refuses the commands clients discover the master with
//! (GET-MASTER-ADDR-BY-NAME, MASTER, MASTERS and the Valkey aliases) by closing the
//! connection. Per the client survey, that is the one reaction every client library turns
//! into "try the next sentinel": an error reply is raised to the caller by redis-py (MASTERS)
//! and ends Lettuce's lookup, and a null reply ends Lettuce's lookup too, while a dropped
//! connection moves redis-py, redis-rs, ioredis, node-redis, go-redis, Jedis, Lettuce and
//! StackExchange.Redis on to another sentinel.
//!
//! `SENTINEL CONFIG SET` values are node-local, as in Sentinel. `resolve-hostnames` lets
//! MONITOR accept hostnames; `announce-ip`/`announce-port` change the Sentinel address this
//! node announces through the log. Nodes have no links between their Sentinel ports to
//! authenticate, so `sentinel-user`/`sentinel-pass` are stored and reported only, as are
//! `announce-hostnames` (masters are reported by the host they were added with) and
//! `loglevel`.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, info};

use super::instance::{master_map, other_sentinels, replica_maps, sentinel_maps};
use super::table::CmdId;
use super::{Reply, Session, Shared};
use crate::api::resp::frame::Frame;
use crate::api::resp::parse::{parse_int, Parse};
use crate::consensus::ProposeError;
use crate::fsm::{ClusterState, Command, FailoverReason, MasterSpec, Rejection};
use crate::model::{glob_match, Addr};
use crate::tuning::Knob;

/// How long SENTINEL FAILOVER waits for the leader to take or refuse the request.
pub const FAILOVER_WAIT: Duration = Duration::from_secs(10);

/// Node-local settings of `SENTINEL CONFIG GET/SET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// MONITOR accepts hostnames (resolved once, to check them).
    pub resolve_hostnames: bool,
    /// Reported only.
    pub announce_hostnames: bool,
    /// Host of the announced Sentinel address ("" = the listen address).
    pub announce_ip: String,
    /// Port of the announced Sentinel address (0 = the bound port).
    pub announce_port: u16,
    /// Reported only.
    pub sentinel_user: String,
    /// Reported only.
    pub sentinel_pass: String,
    /// Reported only.
    pub loglevel: String,
    /// `down_after_ms` of masters added by MONITOR on this node (`SENTINEL DEBUG`).
    pub default_down_after_ms: u64,
    /// `failover_timeout_ms` of masters added by MONITOR on this node.
    pub default_failover_timeout_ms: u64,
}

impl Default for SentinelConfig {
    fn default() -> Self {
        SentinelConfig {
            resolve_hostnames: false,
            announce_hostnames: false,
            announce_ip: String::new(),
            announce_port: 0,
            sentinel_user: String::new(),
            sentinel_pass: String::new(),
            loglevel: "notice".into(),
            default_down_after_ms: MasterSpec::DEFAULT_DOWN_AFTER_MS,
            default_failover_timeout_ms: MasterSpec::DEFAULT_FAILOVER_TIMEOUT_MS,
        }
    }
}

fn no_such_master() -> Frame {
    Frame::error("No such master with that name")
}

/// Error codes Sentinel sends without `ERR` in front.
const CODES: [&str; 4] = ["INPROG", "NOGOODSLAVE", "NOQUORUM", "NOTREADY"];

/// A state-machine refusal as Sentinel words it.
pub fn rejection_frame(r: &Rejection) -> Frame {
    let code = r.message.split(' ').next().unwrap_or("");
    if CODES.contains(&code) {
        Frame::Error(r.message.clone())
    } else {
        Frame::error(&r.message)
    }
}

fn propose_error(e: ProposeError) -> Frame {
    match e {
        ProposeError::Rejected(r) => rejection_frame(&r),
        other => Frame::error(other.to_string()),
    }
}

fn name_of(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether this node may hand out master addresses now (see the module docs).
pub(crate) fn fresh(sh: &Shared) -> bool {
    let ok = sh.ctx.raft.has_leader_contact();
    if !ok {
        debug!(
            since_leader_contact = ?sh.ctx.raft.since_leader_contact(),
            "refusing a master lookup: no recent contact with a Raft leader"
        );
    }
    ok
}

/// Runs a SENTINEL subcommand.
pub async fn run(id: CmdId, p: &mut Parse, _s: &mut Session, sh: &Shared) -> Reply {
    match id {
        CmdId::SentinelGetMasterAddr => {
            if !fresh(sh) {
                return Reply::Drop;
            }
            let name = p.next_bytes().expect("arity checked");
            get_master_addr(&sh.ctx.raft.state(), &name).into()
        }
        CmdId::SentinelMasters => {
            if !fresh(sh) {
                return Reply::Drop;
            }
            let st = sh.ctx.raft.state();
            let view = sh.ctx.monitor.borrow().clone();
            let now = Instant::now();
            Frame::Array(
                st.masters
                    .values()
                    .map(|m| master_map(sh, &st, &view, m, now))
                    .collect(),
            )
            .into()
        }
        CmdId::SentinelMaster => {
            if !fresh(sh) {
                return Reply::Drop;
            }
            let name = name_of(&p.next_bytes().expect("arity checked"));
            let st = sh.ctx.raft.state();
            let view = sh.ctx.monitor.borrow().clone();
            match st.masters.get(&name) {
                Some(m) => master_map(sh, &st, &view, m, Instant::now()).into(),
                None => no_such_master().into(),
            }
        }
        CmdId::SentinelReplicas => {
            let name = name_of(&p.next_bytes().expect("arity checked"));
            let st = sh.ctx.raft.state();
            let view = sh.ctx.monitor.borrow().clone();
            match st.masters.get(&name) {
                Some(m) => Frame::Array(replica_maps(&view, m, Instant::now())).into(),
                None => no_such_master().into(),
            }
        }
        CmdId::SentinelSentinels => {
            let name = name_of(&p.next_bytes().expect("arity checked"));
            let st = sh.ctx.raft.state();
            match st.masters.get(&name) {
                Some(m) => Frame::Array(sentinel_maps(&other_sentinels(sh, &st), m)).into(),
                None => no_such_master().into(),
            }
        }
        CmdId::SentinelCkquorum => {
            let name = name_of(&p.next_bytes().expect("arity checked"));
            ckquorum(sh, &name).into()
        }
        CmdId::SentinelMyid => Frame::bulk(sh.ctx.run_id.clone()).into(),
        CmdId::SentinelFlushconfig => {
            // The replicated state is the configuration and is always durable.
            Frame::ok().into()
        }
        CmdId::SentinelPendingScripts => pending_scripts(sh).into(),
        CmdId::SentinelDebug => debug(p, sh).into(),
        CmdId::SentinelInfoCache => info_cache(p, sh).into(),
        CmdId::SentinelIsMasterDownByAddr => is_master_down_by_addr(p, sh).into(),
        CmdId::SentinelSimulateFailure => simulate_failure(p).into(),
        CmdId::SentinelConfig => config(p, sh).into(),
        CmdId::SentinelMonitor => monitor(p, sh).await.into(),
        CmdId::SentinelRemove => {
            let name = name_of(&p.next_bytes().expect("arity checked"));
            write(sh, Command::Remove { name }).await.into()
        }
        CmdId::SentinelSet => set(p, sh).await.into(),
        CmdId::SentinelReset => {
            let pattern = name_of(&p.next_bytes().expect("arity checked"));
            match sh
                .ctx
                .raft
                .propose_retrying(Command::Reset { pattern })
                .await
            {
                Ok(o) => Frame::Integer(o.count as i64).into(),
                Err(e) => propose_error(e).into(),
            }
        }
        CmdId::SentinelFailover => {
            let name = name_of(&p.next_bytes().expect("arity checked"));
            failover(sh, name).await.into()
        }
        _ => help(),
    }
}

/// `[host, port]` of the current master, or a null array for an unknown name.
pub fn get_master_addr(st: &ClusterState, name: &[u8]) -> Frame {
    let m = std::str::from_utf8(name)
        .ok()
        .and_then(|n| st.masters.get(n));
    match m {
        Some(m) => Frame::Array(vec![
            Frame::bulk(m.addr.host.clone()),
            Frame::bulk_int(m.addr.port),
        ]),
        None => Frame::NullArray,
    }
}

async fn write(sh: &Shared, cmd: Command) -> Frame {
    let kind = cmd.kind();
    match sh.ctx.raft.propose_retrying(cmd).await {
        Ok(_) => {
            info!(command = kind, "applied a SENTINEL write");
            Frame::ok()
        }
        Err(e) => propose_error(e),
    }
}

/// Raft's version of Sentinel's quorum check: usable voters must reach both the master's
/// quorum (ODOWN needs that many observations) and a Raft majority (to commit a failover).
fn ckquorum(sh: &Shared, name: &str) -> Frame {
    let st = sh.ctx.raft.state();
    let Some(m) = st.masters.get(name) else {
        return no_such_master();
    };
    let me = sh.ctx.raft.node_id();
    let voters = st.members.values().filter(|m| m.voter).count().max(1);
    let majority = voters / 2 + 1;
    let status = sh.ctx.raft.status();
    let usable = if status.leader_id == me {
        1 + status
            .progress
            .iter()
            .filter(|p| {
                p.id != me && p.recent_active && st.members.get(&p.id).is_some_and(|m| m.voter)
            })
            .count()
    } else if sh.ctx.raft.has_leader_contact() {
        // A follower knows its leader holds a majority (check-quorum), not who else is up.
        majority
    } else {
        1
    };
    let no_quorum = usable < m.quorum as usize;
    let no_auth = usable < majority;
    if !no_quorum && !no_auth {
        return Frame::Simple(format!(
            "OK {usable} usable Sentinels. Quorum and failover authorization can be reached"
        ));
    }
    let mut e = format!("NOQUORUM {usable} usable Sentinels. ");
    if no_quorum {
        e.push_str("Not enough available Sentinels to reach the specified quorum for this master");
    }
    if no_auth {
        if no_quorum {
            e.push_str(". ");
        }
        e.push_str("Not enough available Sentinels to reach the majority and authorize a failover");
    }
    Frame::Error(e)
}

async fn monitor(p: &mut Parse, sh: &Shared) -> Frame {
    let name = name_of(&p.next_bytes().expect("arity checked"));
    let host = name_of(&p.next_bytes().expect("arity checked"));
    let port = p.next_bytes().expect("arity checked");
    let quorum = p.next_bytes().expect("arity checked");
    // Sentinel's order of checks: quorum parses, port parses, quorum > 0, host, port range.
    let Some(quorum) = parse_int(&quorum) else {
        return Frame::error("Invalid quorum");
    };
    let Some(port) = parse_int(&port) else {
        return Frame::error("Invalid port");
    };
    if quorum <= 0 {
        return Frame::error("Quorum must be 1 or greater.");
    }
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    if !is_ip {
        let resolve = sh.config.lock().resolve_hostnames;
        let resolves = resolve
            && tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host((host.as_str(), 1)),
            )
            .await
            .is_ok_and(|r| r.is_ok_and(|mut a| a.next().is_some()));
        if !resolves {
            return Frame::error("Invalid IP address or hostname specified");
        }
    }
    let Some(addr) = u16::try_from(port)
        .ok()
        .and_then(|p| Addr::new(host, p).ok())
    else {
        return Frame::error("Invalid port number.");
    };
    let Ok(quorum) = u32::try_from(quorum) else {
        return Frame::error("Invalid quorum");
    };
    // The config file's defaults, so a master added either way behaves the same.
    let mut spec = MasterSpec::new(name, addr, quorum);
    {
        let c = sh.config.lock();
        spec.down_after_ms = c.default_down_after_ms;
        spec.failover_timeout_ms = c.default_failover_timeout_ms;
    }
    write(sh, Command::Monitor { spec }).await
}

async fn set(p: &mut Parse, sh: &Shared) -> Frame {
    let name = name_of(&p.next_bytes().expect("arity checked"));
    let mut options = Vec::new();
    while let Ok(opt) = p.next_string() {
        if opt.eq_ignore_ascii_case("rename-command") {
            // Commands are never renamed on the Redis side this node talks to.
            return Frame::error(format!(
                "Unknown option or number of arguments for SENTINEL SET '{opt}'"
            ));
        }
        match p.next_string() {
            Ok(val) => {
                let lower = opt.to_ascii_lowercase();
                if lower == "notification-script" || lower == "client-reconfig-script" {
                    if let Err(e) = script_allowed(sh, &lower, &val) {
                        return e;
                    }
                }
                options.push((opt, val))
            }
            Err(_) => {
                return Frame::error(format!(
                    "Unknown option or number of arguments for SENTINEL SET '{opt}'"
                ))
            }
        }
    }
    write(sh, Command::Set { name, options }).await
}

/// Sentinel's checks of a script path in `SENTINEL SET`, made on the node that receives it:
/// its `deny_scripts_reconfig`, and that the path is executable here.
fn script_allowed(sh: &Shared, opt: &str, path: &str) -> Result<(), Frame> {
    if sh.ctx.deny_scripts_reconfig {
        return Err(Frame::error(
            "Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration",
        ));
    }
    if path.is_empty() {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    let executable =
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable || !path.starts_with('/') {
        return Err(Frame::error(if opt == "notification-script" {
            "Notification script seems non existing or non executable"
        } else {
            "Client reconfiguration script seems non existing or non executable"
        }));
    }
    Ok(())
}

/// A `SENTINEL DEBUG` parameter: Sentinel's name and where it lives on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DebugParam {
    Tuning(Knob),
    DefaultDownAfter,
    DefaultFailoverTimeout,
    ScriptMaxRuntime,
    ScriptRetryDelay,
}

/// Sentinel's `SENTINEL DEBUG` parameters that map onto this node's knobs, in Sentinel's
/// listing order. Sentinel's PUBLISH-PERIOD, SLAVE-RECONF-TIMEOUT, MIN-LINK-RECONNECT-PERIOD
/// and ELECTION-TIMEOUT govern hello gossip, its own reconfiguration bookkeeping, link
/// recycling and its leader election, none of which exists here: they are refused as
/// unknown rather than accepted and ignored.
const DEBUG_PARAMS: [(&str, DebugParam); 9] = [
    ("INFO-PERIOD", DebugParam::Tuning(Knob::InfoPeriod)),
    ("PING-PERIOD", DebugParam::Tuning(Knob::PingPeriod)),
    ("ASK-PERIOD", DebugParam::Tuning(Knob::AskPeriod)),
    ("DEFAULT-DOWN-AFTER", DebugParam::DefaultDownAfter),
    (
        "DEFAULT-FAILOVER-TIMEOUT",
        DebugParam::DefaultFailoverTimeout,
    ),
    ("TILT-TRIGGER", DebugParam::Tuning(Knob::TiltTrigger)),
    ("TILT-PERIOD", DebugParam::Tuning(Knob::TiltPeriod)),
    ("SCRIPT-MAX-RUNTIME", DebugParam::ScriptMaxRuntime),
    ("SCRIPT-RETRY-DELAY", DebugParam::ScriptRetryDelay),
];

/// Largest value `SENTINEL DEBUG` takes (one day): Sentinel takes any positive 64-bit value,
/// but periods that long only overflow timers.
const DEBUG_MAX_MS: i64 = 86_400_000;

/// `SENTINEL DEBUG [<param> <value> ...]`: lists or sets this node's timing knobs, all
/// node-local (the replicated per-master timings are changed with `SENTINEL SET`). Values are
/// milliseconds, greater than 0. Arguments are read in order and the first problem is
/// reported as Sentinel reports it; unlike Sentinel, pairs before a bad one are not applied.
fn debug(p: &mut Parse, sh: &Shared) -> Frame {
    let mut parsed = Vec::new();
    while let Ok(opt) = p.next_string() {
        let param = DEBUG_PARAMS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&opt))
            .map(|(_, d)| *d);
        let (Some(param), Ok(val)) = (param, p.next_bytes()) else {
            return Frame::error(format!(
                "Unknown option or number of arguments for SENTINEL DEBUG '{opt}'"
            ));
        };
        match parse_int(&val) {
            Some(v) if v > 0 && v <= DEBUG_MAX_MS => parsed.push((param, v as u64)),
            _ => {
                return Frame::error(format!(
                    "Invalid argument '{}' for SENTINEL DEBUG '{opt}'",
                    String::from_utf8_lossy(&val)
                ))
            }
        }
    }
    let tuning = &sh.ctx.tuning;
    if parsed.is_empty() {
        let c = sh.config.lock();
        let t = sh.ctx.scripts.timing();
        let ms = |v: u64| Frame::bulk(v.to_string());
        let value = |d: DebugParam| match d {
            DebugParam::Tuning(k) => tuning.ms(k),
            DebugParam::DefaultDownAfter => c.default_down_after_ms,
            DebugParam::DefaultFailoverTimeout => c.default_failover_timeout_ms,
            DebugParam::ScriptMaxRuntime => t.max_runtime.as_millis() as u64,
            DebugParam::ScriptRetryDelay => t.retry_delay.as_millis() as u64,
        };
        return Frame::Map(
            DEBUG_PARAMS
                .iter()
                .map(|(n, d)| (Frame::bulk_static(n), ms(value(*d))))
                .collect(),
        );
    }
    let summary = format!("{parsed:?}");
    let mut t = sh.ctx.scripts.timing();
    let mut knobs = Vec::new();
    {
        let mut c = sh.config.lock();
        for (param, v) in parsed {
            match param {
                DebugParam::Tuning(k) => knobs.push((k, v)),
                DebugParam::DefaultDownAfter => c.default_down_after_ms = v,
                DebugParam::DefaultFailoverTimeout => c.default_failover_timeout_ms = v,
                DebugParam::ScriptMaxRuntime => t.max_runtime = Duration::from_millis(v),
                DebugParam::ScriptRetryDelay => t.retry_delay = Duration::from_millis(v),
            }
        }
    }
    sh.ctx.scripts.set_timing(t);
    if !knobs.is_empty() {
        tuning.set(&knobs);
    }
    info!(settings = %summary, "SENTINEL DEBUG changed this node's timing settings");
    Frame::ok()
}

/// `SENTINEL PENDING-SCRIPTS`: this node's queue, in Sentinel's shape.
fn pending_scripts(sh: &Shared) -> Frame {
    let now = tokio::time::Instant::now();
    let ms = |d: std::time::Duration| Frame::bulk(d.as_millis().to_string());
    Frame::Array(
        sh.ctx
            .scripts
            .pending()
            .into_iter()
            .map(|j| {
                let mut m = vec![(
                    Frame::bulk_static("argv"),
                    Frame::Array(j.argv.into_iter().map(Frame::bulk).collect()),
                )];
                let running = j.pid.is_some();
                m.push((
                    Frame::bulk_static("flags"),
                    Frame::bulk_static(if running { "running" } else { "scheduled" }),
                ));
                m.push((
                    Frame::bulk_static("pid"),
                    Frame::bulk(j.pid.unwrap_or(0).to_string()),
                ));
                if running {
                    m.push((
                        Frame::bulk_static("run-time"),
                        ms(now.saturating_duration_since(j.at)),
                    ));
                } else {
                    m.push((
                        Frame::bulk_static("run-delay"),
                        ms(j.at.saturating_duration_since(now)),
                    ));
                }
                m.push((
                    Frame::bulk_static("retry-num"),
                    Frame::bulk(j.retry_num.to_string()),
                ));
                Frame::Map(m)
            })
            .collect(),
    )
}

/// `SENTINEL FAILOVER <name>`: asks the leader for a forced failover and answers once the
/// leader started it (`+OK`) or refused (`-NOGOODSLAVE`, `-INPROG`), as Sentinel answers
/// after starting its own.
async fn failover(sh: &Shared, name: String) -> Frame {
    match crate::failover::request(
        &sh.ctx.raft,
        &name,
        FailoverReason::Forced,
        None,
        FAILOVER_WAIT,
    )
    .await
    {
        Ok(epoch) => {
            info!(master = %name, epoch, "forced failover started by SENTINEL FAILOVER");
            Frame::ok()
        }
        Err(e) => Frame::Error(e.resp_error()),
    }
}

/// `SENTINEL IS-MASTER-DOWN-BY-ADDR <ip> <port> <current-epoch> <runid>`: Sentinel's peer
/// query, answered from the committed state: `1` when this node's committed observation says
/// the master at that address is down. Nodes here elect their failover leader through Raft,
/// not through these votes, so a vote request is never granted: the leader is always `*`
/// with epoch 0, which a Sentinel peer reads as "no vote".
fn is_master_down_by_addr(p: &mut Parse, sh: &Shared) -> Frame {
    let host = name_of(&p.next_bytes().expect("arity checked"));
    let port = p.next_bytes().expect("arity checked");
    let epoch = p.next_bytes().expect("arity checked");
    let not_int = || Frame::error("value is not an integer or out of range");
    let Some(port) = parse_int(&port) else {
        return not_int();
    };
    if parse_int(&epoch).is_none() {
        return not_int();
    }
    let st = sh.ctx.raft.state();
    let me = sh.ctx.raft.node_id();
    let down = st
        .masters
        .values()
        .find(|m| m.addr.host == host && i64::from(m.addr.port) == port)
        .and_then(|m| m.observations.get(&me))
        .is_some_and(|o| o.down);
    Frame::Array(vec![
        Frame::Integer(i64::from(down)),
        Frame::bulk_static("*"),
        Frame::Integer(0),
    ])
}

/// `SENTINEL SIMULATE-FAILURE`: Sentinel's crash points exist to test its own election;
/// exiting a node on purpose here would only test Raft's recovery, which kill -9 already
/// does. Refused with a clear error; HELP lists Sentinel's flags as Sentinel does.
fn simulate_failure(p: &mut Parse) -> Frame {
    let mut flags = Vec::new();
    while let Ok(f) = p.next_string() {
        flags.push(f.to_ascii_lowercase());
    }
    if flags.iter().any(|f| f == "help") {
        return Frame::Array(vec![
            Frame::bulk_static("crash-after-election"),
            Frame::bulk_static("crash-after-promotion"),
        ]);
    }
    for f in &flags {
        if f != "crash-after-election" && f != "crash-after-promotion" {
            return Frame::error("Unknown failure simulation specified");
        }
    }
    Frame::error(
        "SIMULATE-FAILURE is not supported: nodes elect through Raft; stop a node (kill -9) to test failures",
    )
}

/// `SENTINEL INFO-CACHE [name ...]`: per master, `[age-ms, INFO]` of the master and each
/// replica: the server and replication sections this node last read, and their age (null
/// before the first successful INFO).
fn info_cache(p: &mut Parse, sh: &Shared) -> Frame {
    let st = sh.ctx.raft.state();
    let view = sh.ctx.monitor.borrow().clone();
    let now = Instant::now();
    let mut names: Vec<String> = Vec::new();
    while let Ok(n) = p.next_string() {
        if st.masters.contains_key(&n) && !names.contains(&n) {
            names.push(n);
        }
    }
    let entry = |a: &Addr| {
        let info = view.get(a);
        let age = info
            .and_then(|i| i.info_refresh)
            .map_or(0, |t| now.saturating_duration_since(t).as_millis() as i64);
        let text = info
            .and_then(|i| i.info_text.as_deref())
            .map_or(Frame::Null, |t| Frame::bulk(t.to_string()));
        Frame::Array(vec![Frame::Integer(age), text])
    };
    let mut out = Vec::new();
    for n in names {
        let m = &st.masters[&n];
        let mut list = vec![entry(&m.addr)];
        list.extend(m.replicas.iter().map(entry));
        out.push(Frame::bulk(n));
        out.push(Frame::Array(list));
    }
    Frame::Array(out)
}

const CONFIG_PARAMS: [&str; 7] = [
    "resolve-hostnames",
    "announce-hostnames",
    "announce-ip",
    "announce-port",
    "sentinel-user",
    "sentinel-pass",
    "loglevel",
];

fn config(p: &mut Parse, sh: &Shared) -> Frame {
    let verb = p.next_string().expect("arity checked").to_ascii_lowercase();
    match verb.as_str() {
        "get" if p.remaining() >= 1 => {
            let mut pats = Vec::new();
            while let Ok(pat) = p.next_bytes() {
                pats.push(pat);
            }
            let c = sh.config.lock().clone();
            let yn = |b: bool| if b { "yes" } else { "no" };
            let mut out = Vec::new();
            for param in CONFIG_PARAMS {
                if !pats
                    .iter()
                    .any(|pat| glob_match(&pat.to_ascii_lowercase(), param.as_bytes()))
                {
                    continue;
                }
                let v = match param {
                    "resolve-hostnames" => yn(c.resolve_hostnames).to_string(),
                    "announce-hostnames" => yn(c.announce_hostnames).to_string(),
                    "announce-ip" => c.announce_ip.clone(),
                    "announce-port" => c.announce_port.to_string(),
                    "sentinel-user" => c.sentinel_user.clone(),
                    "sentinel-pass" => c.sentinel_pass.clone(),
                    _ => c.loglevel.clone(),
                };
                out.push((Frame::bulk_static(param), Frame::bulk(v)));
            }
            Frame::Map(out)
        }
        "set" if p.remaining() >= 2 => {
            let mut staged = sh.config.lock().clone();
            let mut seen: Vec<String> = Vec::new();
            while let Ok(param) = p.next_string() {
                let lower = param.to_ascii_lowercase();
                // Sentinel's order of checks: name, duplicate, value present, value.
                if !CONFIG_PARAMS.contains(&lower.as_str()) {
                    return Frame::error(format!(
                        "Invalid argument '{param}' to SENTINEL CONFIG SET"
                    ));
                }
                if seen.contains(&lower) {
                    return Frame::error(format!(
                        "Duplicate argument '{param}' to SENTINEL CONFIG SET"
                    ));
                }
                let Ok(val) = p.next_string() else {
                    return Frame::error(format!("Missing argument '{param}' value"));
                };
                seen.push(lower.clone());
                let bad = || {
                    Frame::error(format!(
                        "Invalid value '{val}' to SENTINEL CONFIG SET '{param}'"
                    ))
                };
                let yesno = |v: &str| match v.to_ascii_lowercase().as_str() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => None,
                };
                match lower.as_str() {
                    "resolve-hostnames" => match yesno(&val) {
                        Some(b) => staged.resolve_hostnames = b,
                        None => return bad(),
                    },
                    "announce-hostnames" => match yesno(&val) {
                        Some(b) => staged.announce_hostnames = b,
                        None => return bad(),
                    },
                    // Sentinel takes any text; this one is announced through the log, so it
                    // must make an address (no spaces, within the state's limits).
                    "announce-ip" => {
                        let usable = val.is_empty()
                            || (val.len() <= crate::fsm::limits::MAX_NAME_LEN
                                && Addr::new(val.as_str(), 1).is_ok());
                        if !usable {
                            return bad();
                        }
                        staged.announce_ip = val.clone();
                    }
                    "announce-port" => match val.parse::<u16>() {
                        Ok(v) => staged.announce_port = v,
                        Err(_) => return bad(),
                    },
                    "sentinel-user" => staged.sentinel_user = val.clone(),
                    "sentinel-pass" => staged.sentinel_pass = val.clone(),
                    _ => match val.to_ascii_lowercase().as_str() {
                        l @ ("debug" | "verbose" | "notice" | "warning" | "nothing") => {
                            staged.loglevel = l.to_string()
                        }
                        _ => return bad(),
                    },
                }
            }
            // All pairs validated: apply them together, as Sentinel 7.2 does.
            let mut c = sh.config.lock();
            let moved = (&c.announce_ip, c.announce_port)
                != (&staged.announce_ip, staged.announce_port);
            if moved {
                let addr = announced_addr(sh, &staged);
                info!(sentinel_addr = %addr, "announcing a new Sentinel address");
                sh.ctx.raft.announce_sentinel_addr(Some(addr));
            }
            *c = staged;
            Frame::ok()
        }
        _ => Frame::error("Only SENTINEL CONFIG GET <param> [<param> <param> ...] / SET <param> <value> [<param> <value> ...] are supported."),
    }
}

/// The Sentinel address this node announces: `announce-ip` (else the address it listens
/// on) and `announce-port` (else the port it is bound to), as Sentinel builds its hello.
fn announced_addr(sh: &Shared, c: &SentinelConfig) -> String {
    let host = if c.announce_ip.is_empty() {
        sh.ctx.sentinel_listen.host.clone()
    } else {
        c.announce_ip.clone()
    };
    let port = if c.announce_port == 0 {
        sh.ctx.sentinel_listen.port
    } else {
        c.announce_port
    };
    Addr { host, port }.to_string()
}

fn help() -> Reply {
    let lines = [
        "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CKQUORUM <master-name>",
        "    Check if the current Sentinel configuration is able to reach the quorum",
        "    needed to failover a master and the majority needed to authorize the",
        "    failover.",
        "CONFIG SET <param> <value> [<param> <value>] ...",
        "    Set a global Sentinel configuration parameter.",
        "CONFIG GET <param> [param param param ...]",
        "    Get global Sentinel configuration parameter.",
        "DEBUG [<param> <value> ...]",
        "    Show a list of configurable time parameters and their values (milliseconds).",
        "    Or update current configurable parameters values (one or more).",
        "GET-MASTER-ADDR-BY-NAME <master-name>",
        "    Return the ip and port number of the master with that name.",
        "FAILOVER <master-name>",
        "    Manually failover a master node without asking for agreement from other",
        "    Sentinels",
        "FLUSHCONFIG",
        "    Force Sentinel to rewrite its configuration on disk, including the current",
        "    Sentinel state.",
        "INFO-CACHE <master-name>",
        "    Return last cached INFO output from masters and all its replicas.",
        "IS-MASTER-DOWN-BY-ADDR <ip> <port> <current-epoch> <runid>",
        "    Check if the master specified by ip:port is down from current Sentinel's",
        "    point of view.",
        "MASTER <master-name>",
        "    Show the state and info of the specified master.",
        "MASTERS",
        "    Show a list of monitored masters and their state.",
        "MONITOR <name> <ip> <port> <quorum>",
        "    Start monitoring a new master with the specified name, ip, port and quorum.",
        "MYID",
        "    Return the ID of the Sentinel instance.",
        "PENDING-SCRIPTS",
        "    Get pending scripts information.",
        "REMOVE <master-name>",
        "    Remove master from Sentinel's monitor list.",
        "REPLICAS <master-name>",
        "    Show a list of replicas for this master and their state.",
        "RESET <pattern>",
        "    Reset masters for specific master name matching this pattern.",
        "SENTINELS <master-name>",
        "    Show a list of Sentinel instances for this master and their state.",
        "SET <master-name> <option> <value> [<option> <value> ...]",
        "    Set configuration parameters for certain masters.",
        "SIMULATE-FAILURE [CRASH-AFTER-ELECTION] [CRASH-AFTER-PROMOTION] [HELP]",
        "    Simulate a Sentinel crash.",
        "HELP",
        "    Prints this help.",
    ];
    Frame::Array(lines.iter().map(|l| Frame::Simple((*l).into())).collect()).into()
}
