//! Command dispatch. Checks run in Redis's order (`processCommand`): unknown command or
//! subcommand, arity, authentication, then the RESP2 Pub/Sub context; only then does the
//! command run. Each command family lives in its own module.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::Instrument;

use super::clients::{ClientHandle, Registry, Stats};
use super::frame::{Frame, Protocol};
use super::node_events::LocalEvent;
use super::parse::{Parse, ParseError};
use super::RespContext;
use crate::consensus::AppliedEvent;

pub mod client;
pub mod command;
pub mod hello;
pub mod info;
pub mod instance;
pub mod pubsub;
pub mod sentinel;
pub mod table;

use table::{CmdId, Spec};

/// State shared by every connection of the port.
pub struct Shared {
    /// What the node gave the port.
    pub ctx: RespContext,
    /// Counters for INFO and the metrics port (shared with the latter through the context).
    pub stats: Arc<Stats>,
    /// Connected clients.
    pub clients: Registry,
    /// Bytes buffered by all connections against `buffer_budget`.
    pub budget: Arc<crate::api::resp::budget::Budget>,
    /// Node-local settings of `SENTINEL CONFIG SET`.
    pub config: parking_lot::Mutex<sentinel::SentinelConfig>,
    /// Server start, for uptime.
    pub started: Instant,
    /// Port the listener is bound to (INFO `tcp_port`).
    pub port: u16,
    /// Pre-encoded master-address replies of the newest applied state.
    pub addr_tables: super::fast::AddrTables,
    /// Events of this node's own (`+tilt`/`-tilt`), for subscribers.
    pub local_events: broadcast::Sender<LocalEvent>,
}

impl Shared {
    /// Shared state for a port bound to `port`.
    pub fn new(ctx: RespContext, port: u16) -> Shared {
        Shared {
            stats: ctx.stats.clone(),
            budget: Arc::new(crate::api::resp::budget::Budget::new(
                ctx.options.buffer_budget,
            )),
            clients: Registry::default(),
            config: parking_lot::Mutex::new(sentinel::SentinelConfig {
                announce_ip: ctx.announce_ip.clone().unwrap_or_default(),
                ..Default::default()
            }),
            started: Instant::now(),
            port,
            ctx,
            addr_tables: Default::default(),
            local_events: broadcast::channel(super::node_events::CAPACITY).0,
        }
    }
}

/// One client's protocol state, owned by its connection task.
pub struct Session {
    /// Protocol chosen by HELLO.
    pub proto: Protocol,
    /// Authenticated (always true without `requirepass`).
    pub authed: bool,
    /// Its registry entry.
    pub handle: Arc<ClientHandle>,
    /// Channels subscribed, in subscription order.
    pub channels: pubsub::NameSet,
    /// Patterns subscribed, in subscription order.
    pub patterns: pubsub::NameSet,
    /// Applied events, while subscribed to anything.
    pub events: Option<broadcast::Receiver<AppliedEvent>>,
    /// This node's own events, while subscribed to anything.
    pub local: Option<broadcast::Receiver<LocalEvent>>,
    /// Close once the pending replies are written (QUIT, CLIENT KILL of itself).
    pub close_after_reply: bool,
}

impl Session {
    /// A fresh session; authenticated from the start when no password is set.
    pub fn new(handle: Arc<ClientHandle>, requirepass: bool) -> Session {
        Session {
            proto: Protocol::Resp2,
            authed: !requirepass,
            handle,
            channels: Default::default(),
            patterns: Default::default(),
            events: None,
            local: None,
            close_after_reply: false,
        }
    }

    /// Subscribed to at least one channel or pattern.
    pub fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// Channel plus pattern subscriptions (the count in (un)subscribe confirmations).
    pub fn subscription_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Copies what CLIENT LIST shows into the registry entry.
    pub fn publish_meta(&self) {
        let mut m = self.handle.meta.lock();
        m.resp = self.proto.version();
        m.sub = self.channels.len();
        m.psub = self.patterns.len();
    }
}

/// What a command produced.
#[derive(Debug)]
pub enum Reply {
    /// One frame (almost every command).
    One(Frame),
    /// Several frames (one confirmation per channel for (UN)SUBSCRIBE).
    Many(Vec<Frame>),
    /// Close the connection without a reply: a node cut off from the Raft leader refuses to
    /// hand out a master address this way, because every client library treats a dropped
    /// connection as "ask the next sentinel" (an error or a null reply does not do that for
    /// all of them; see the stale guard in `sentinel.rs`).
    Drop,
}

impl From<Frame> for Reply {
    fn from(f: Frame) -> Reply {
        Reply::One(f)
    }
}

/// `-ERR unknown command '<cmd>', with args beginning with: '<a1>' ...` exactly as Redis
/// builds it (command cut to 128 bytes; arguments until 128 bytes have been printed).
pub fn unknown_command(args: &[Bytes]) -> Frame {
    let mut list = String::new();
    for a in &args[1..] {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        let s = String::from_utf8_lossy(&a[..a.len().min(room)]).into_owned();
        list.push_str(&format!("'{s}' "));
    }
    let name = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]).into_owned();
    Frame::error(format!(
        "unknown command '{name}', with args beginning with: {list}"
    ))
}

/// `-ERR wrong number of arguments for '<fullname>' command`
pub fn wrong_arity(fullname: &str) -> Frame {
    Frame::error(format!(
        "wrong number of arguments for '{fullname}' command"
    ))
}

/// `-ERR unknown subcommand '<sub>'. Try <CMD> HELP.`
pub fn unknown_subcommand(cmd: &[u8], sub: &[u8]) -> Frame {
    let sub = String::from_utf8_lossy(&sub[..sub.len().min(128)]).into_owned();
    Frame::error(format!(
        "unknown subcommand '{sub}'. Try {} HELP.",
        String::from_utf8_lossy(cmd).to_ascii_uppercase()
    ))
}

/// Redis's generic errors for argument parse failures.
pub fn parse_error(e: ParseError) -> Frame {
    match e {
        ParseError::NotInteger => Frame::error("value is not an integer or out of range"),
        ParseError::Trailing | ParseError::EndOfStream => Frame::error("syntax error"),
    }
}

/// Resolves a request to its table entry, or the error Redis sends instead.
pub fn resolve(args: &[Bytes]) -> Result<&'static Spec, Frame> {
    let Some(top) = table::lookup(&args[0]) else {
        return Err(unknown_command(args));
    };
    let spec = if top.is_container() && args.len() >= 2 {
        match top.sub(&args[1]) {
            Some(s) => s,
            None => return Err(unknown_subcommand(&args[0], &args[1])),
        }
    } else {
        top
    };
    if !spec.arity_ok(args.len()) {
        return Err(wrong_arity(spec.fullname));
    }
    Ok(spec)
}

/// Runs one request.
pub async fn execute(args: Vec<Bytes>, s: &mut Session, sh: &Shared) -> Reply {
    let spec = match resolve(&args) {
        Ok(spec) => spec,
        Err(f) => {
            sh.stats.commands.add_other();
            return f.into();
        }
    };
    sh.stats.commands.add(spec.id, 1);
    if !s.authed && !spec.no_auth() {
        return Frame::error("-NOAUTH Authentication required.").into();
    }
    if s.proto == Protocol::Resp2 && s.subscribed() && !spec.allowed_in_pubsub() {
        return Frame::error(format!(
            "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.fullname
        ))
        .into();
    }
    {
        let mut m = s.handle.meta.lock();
        m.last_cmd = spec.fullname;
        m.last_active = Some(Instant::now());
    }
    // Arguments after the command (and subcommand) name.
    let skip = if spec.fullname.contains('|') { 2 } else { 1 };
    let mut p = Parse::new(args.into_iter().skip(skip).collect());
    match spec.id {
        CmdId::Auth => hello::auth(&mut p, s, sh),
        CmdId::Hello => hello::hello(&mut p, s, sh),
        CmdId::Ping => hello::ping(&mut p, s),
        CmdId::Quit => {
            s.close_after_reply = true;
            Frame::ok().into()
        }
        CmdId::Role => info::role(sh),
        CmdId::Info => info::info(&mut p, sh),
        CmdId::Subscribe => pubsub::subscribe(&mut p, s, sh, false),
        CmdId::Psubscribe => pubsub::subscribe(&mut p, s, sh, true),
        CmdId::Unsubscribe => pubsub::unsubscribe(&mut p, s, false),
        CmdId::Punsubscribe => pubsub::unsubscribe(&mut p, s, true),
        CmdId::Container => command::all(s),
        CmdId::ClientGetname
        | CmdId::ClientId
        | CmdId::ClientInfo
        | CmdId::ClientKill
        | CmdId::ClientList
        | CmdId::ClientSetinfo
        | CmdId::ClientSetname
        | CmdId::ClientNoEvict
        | CmdId::ClientHelp => client::run(spec.id, &mut p, s, sh),
        CmdId::CommandCount
        | CmdId::CommandDocs
        | CmdId::CommandGetkeys
        | CmdId::CommandInfo
        | CmdId::CommandList
        | CmdId::CommandHelp => command::run(spec.id, &mut p),
        _ => {
            // The connection's own span is at debug level (it would cost every idle
            // connection memory); SENTINEL commands, which may change the cluster, log
            // under one naming the client.
            let peer = s.handle.addr;
            sentinel::run(spec.id, &mut p, s, sh)
                .instrument(tracing::info_span!("resp_conn", %peer))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    fn err(f: Frame) -> String {
        match f {
            Frame::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    /// The metrics port labels per-command counters from `runnable()`: each command a request
    /// can run has exactly one counter slot, and every slot is in range.
    #[test]
    fn every_runnable_command_has_its_own_counter() {
        let all: Vec<_> = table::runnable().collect();
        let mut ids: Vec<usize> = all.iter().map(|(id, _)| *id as usize).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "two commands share a CmdId: {all:?}");
        assert!(ids.iter().all(|i| *i < CmdId::COUNT));
        for (id, name) in &all {
            let words: Vec<&str> = name.split('|').collect();
            let spec = resolve(&args(&words)).or_else(|_| {
                // Commands that take arguments: resolve with enough of them.
                let mut w = words.clone();
                w.extend(["x"; 8]);
                (0..=8)
                    .find_map(|k| resolve(&args(&w[..words.len() + k])).ok())
                    .ok_or(())
            });
            assert_eq!(spec.map(|s| s.id), Ok(*id), "{name}");
        }
        let c = super::super::clients::CommandCounts::default();
        c.add(CmdId::SentinelHelp, 2);
        assert_eq!(c.get(CmdId::SentinelHelp), 2);
    }

    #[test]
    fn unknown_commands_match_redis_text() {
        assert_eq!(
            err(resolve(&args(&["FOO"])).unwrap_err()),
            "ERR unknown command 'FOO', with args beginning with: "
        );
        assert_eq!(
            err(resolve(&args(&["FOO", "a", "b"])).unwrap_err()),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            err(resolve(&args(&["GET", "k"])).unwrap_err()),
            "ERR unknown command 'GET', with args beginning with: 'k' "
        );
        let long = "x".repeat(200);
        let e = err(resolve(&args(&["FOO", &long, "y"])).unwrap_err());
        assert_eq!(
            e,
            format!(
                "ERR unknown command 'FOO', with args beginning with: '{}' ",
                "x".repeat(128)
            )
        );
    }

    #[test]
    fn subcommand_and_arity_errors_match_redis_text() {
        assert_eq!(
            err(resolve(&args(&["SENTINEL"])).unwrap_err()),
            "ERR wrong number of arguments for 'sentinel' command"
        );
        assert_eq!(
            err(resolve(&args(&["sentinel", "BAR"])).unwrap_err()),
            "ERR unknown subcommand 'BAR'. Try SENTINEL HELP."
        );
        assert_eq!(
            err(resolve(&args(&["SENTINEL", "MASTER"])).unwrap_err()),
            "ERR wrong number of arguments for 'sentinel|master' command"
        );
        assert_eq!(
            err(resolve(&args(&["client", "foo"])).unwrap_err()),
            "ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
        assert_eq!(
            err(resolve(&args(&["ROLE", "x"])).unwrap_err()),
            "ERR wrong number of arguments for 'role' command"
        );
        assert_eq!(
            resolve(&args(&["sentinel", "Get-Master-Addr-By-Name", "m"]))
                .unwrap()
                .id,
            CmdId::SentinelGetMasterAddr
        );
        assert_eq!(
            resolve(&args(&["SENTINEL", "get-primary-addr-by-name", "m"]))
                .unwrap()
                .id,
            CmdId::SentinelGetMasterAddr
        );
        assert_eq!(resolve(&args(&["command"])).unwrap().id, CmdId::Container);
    }
}
