//! Connected clients and port counters: what `CLIENT LIST/INFO/KILL` and `INFO clients|stats`
//! report. Each connection owns its state; the registry holds a shared handle per client with
//! the few fields other connections need to see, behind a short uncontended lock.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::cmd::table::CmdId;

/// What one client looks like to others (CLIENT LIST), updated by its own task.
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    /// `CLIENT SETNAME` / `HELLO SETNAME`.
    pub name: Option<String>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<String>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<String>,
    /// Full name of the last command (`sentinel|masters`).
    pub last_cmd: &'static str,
    /// Protocol version (2 or 3).
    pub resp: i64,
    /// Channels subscribed.
    pub sub: usize,
    /// Patterns subscribed.
    pub psub: usize,
    /// When the last command ran.
    pub last_active: Option<Instant>,
}

/// Tells a connection to close once its current command is done. Sticky: a kill while the
/// connection is busy takes effect when it next waits. Waiting costs no lock, as the
/// connection waits on it between every batch of requests.
#[derive(Debug, Default)]
pub struct KillSwitch {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl KillSwitch {
    /// Closes the connection.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once fired.
    pub fn fired(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.fired.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// A connected client as the registry sees it.
#[derive(Debug)]
pub struct ClientHandle {
    /// `CLIENT ID`: unique for the life of the process, increasing.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Socket descriptor (-1 where not available), for `fd=` in CLIENT LIST.
    pub fd: i64,
    /// Accepted at.
    pub created: Instant,
    /// Fields other connections read.
    pub meta: Mutex<ClientMeta>,
    /// Closes the connection (CLIENT KILL, buffer budget, shutdown).
    pub kill: KillSwitch,
    /// Bytes its buffers hold (input and output capacity), for the buffer budget.
    pub buffered: AtomicUsize,
    /// Closed to bring the port back under its buffer budget.
    pub evicted: std::sync::atomic::AtomicBool,
}

impl ClientHandle {
    /// Whether it is a Pub/Sub client (`TYPE pubsub`, flag `P`).
    pub fn is_pubsub(&self) -> bool {
        let m = self.meta.lock();
        m.sub + m.psub > 0
    }

    /// One `CLIENT LIST` line, without the trailing newline, in Redis 7.2's field order.
    pub fn line(&self, now: Instant) -> String {
        let m = self.meta.lock().clone();
        let age = now.saturating_duration_since(self.created).as_secs();
        let idle = m
            .last_active
            .map_or(age, |t| now.saturating_duration_since(t).as_secs());
        let flags = if m.sub + m.psub > 0 { "P" } else { "N" };
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub=0 \
             multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            m.name.as_deref().unwrap_or(""),
            age,
            idle,
            flags,
            m.sub,
            m.psub,
            if m.last_cmd.is_empty() { "NULL" } else { m.last_cmd },
            m.resp,
            m.lib_name.as_deref().unwrap_or(""),
            m.lib_ver.as_deref().unwrap_or(""),
        )
    }
}

/// Requests per command, for the metrics port: one counter per [`CmdId`], and one for
/// requests that named no command the port knows or had the wrong number of arguments.
#[derive(Debug)]
pub struct CommandCounts {
    by_id: [AtomicU64; CmdId::COUNT],
    other: AtomicU64,
}

impl Default for CommandCounts {
    fn default() -> Self {
        CommandCounts {
            by_id: std::array::from_fn(|_| AtomicU64::new(0)),
            other: AtomicU64::new(0),
        }
    }
}

impl CommandCounts {
    /// `n` requests of command `id`.
    pub fn add(&self, id: CmdId, n: u64) {
        if let Some(c) = self.by_id.get(id as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// One request that did not resolve to a command.
    pub fn add_other(&self) {
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of command `id` so far.
    pub fn get(&self, id: CmdId) -> u64 {
        self.by_id
            .get(id as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Requests that did not resolve to a command so far.
    pub fn other(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }
}

/// A client limit of the port that refused or closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Refused: `max_connections` reached.
    MaxConnections,
    /// Refused: the buffers of all connections were over `buffer_budget_bytes`.
    BudgetRefused,
    /// Closed to bring the buffers of all connections back under `buffer_budget_bytes`.
    BudgetEvicted,
    /// A request over `max_request_bytes` (or the pre-AUTH limits).
    RequestTooLarge,
    /// A request that did not arrive whole within `request_timeout_secs` (slowloris).
    RequestTimeout,
    /// No command for `idle_timeout_secs`.
    IdleTimeout,
    /// No AUTH within `unauth_idle_timeout_secs`.
    UnauthTimeout,
    /// Took none of its replies for `write_timeout_secs`.
    WriteTimeout,
    /// A subscriber over the Pub/Sub output limits.
    PubsubOutput,
    /// A subscriber that fell behind the node's event stream.
    PubsubLag,
}

impl Limit {
    /// Every limit, in the order INFO and the metrics list them.
    pub const ALL: [Limit; 10] = [
        Limit::MaxConnections,
        Limit::BudgetRefused,
        Limit::BudgetEvicted,
        Limit::RequestTooLarge,
        Limit::RequestTimeout,
        Limit::IdleTimeout,
        Limit::UnauthTimeout,
        Limit::WriteTimeout,
        Limit::PubsubOutput,
        Limit::PubsubLag,
    ];

    /// Its name in `INFO stats` (`limit_<name>`) and in the metrics' `limit` label.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::BudgetRefused => "buffer_budget_refused",
            Limit::BudgetEvicted => "buffer_budget",
            Limit::RequestTooLarge => "request_too_large",
            Limit::RequestTimeout => "request_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::UnauthTimeout => "unauth_idle_timeout",
            Limit::WriteTimeout => "write_timeout",
            Limit::PubsubOutput => "pubsub_output",
            Limit::PubsubLag => "pubsub_lag",
        }
    }
}

/// Connections refused or closed per [`Limit`].
#[derive(Debug, Default)]
pub struct LimitCounts([AtomicU64; Limit::ALL.len()]);

impl LimitCounts {
    /// One more connection refused or closed by `l`.
    pub fn hit(&self, l: Limit) {
        self.0[l as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused or closed by `l` so far.
    pub fn get(&self, l: Limit) -> u64 {
        self.0[l as usize].load(Ordering::Relaxed)
    }
}

/// Port-wide counters for `INFO stats` / `INFO clients` and the metrics port.
#[derive(Debug, Default)]
pub struct Stats {
    /// `total_connections_received`
    pub connections_received: AtomicU64,
    /// `rejected_connections` (over the cap or the buffer budget)
    pub rejected_connections: AtomicU64,
    /// Connections refused or closed by each client limit.
    pub limits: LimitCounts,
    /// `total_commands_processed`
    pub commands_processed: AtomicU64,
    /// `total_error_replies`
    pub error_replies: AtomicU64,
    /// `total_net_input_bytes`
    pub net_input_bytes: AtomicU64,
    /// `total_net_output_bytes`
    pub net_output_bytes: AtomicU64,
    /// `connected_clients`
    pub connected: AtomicUsize,
    /// Requests per command.
    pub commands: CommandCounts,
}

impl Stats {
    /// Adds a connection's traffic since it last reported.
    pub fn add_traffic(&self, (input, output): (u64, u64)) {
        if input > 0 {
            self.net_input_bytes.fetch_add(input, Ordering::Relaxed);
        }
        if output > 0 {
            self.net_output_bytes.fetch_add(output, Ordering::Relaxed);
        }
    }
}

/// Every connected client by id (ordered, as CLIENT LIST prints them).
#[derive(Debug, Default)]
pub struct Registry {
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// Registers a new client and returns its handle; [`Registry::remove`] on disconnect.
    pub fn add(&self, addr: SocketAddr, laddr: SocketAddr, fd: i64) -> Arc<ClientHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            meta: Mutex::new(ClientMeta {
                resp: 2,
                ..ClientMeta::default()
            }),
            kill: KillSwitch::default(),
            buffered: AtomicUsize::new(0),
            evicted: Default::default(),
        });
        self.clients.lock().insert(id, h.clone());
        h
    }

    /// Forgets a client.
    pub fn remove(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    /// A snapshot of all clients, in id order.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    /// Sums of channel and pattern subscriptions (`pubsub_channels`, `pubsub_patterns` are
    /// counts of distinct names in Redis; here per-client sums are a close upper bound).
    pub fn pubsub_counts(&self) -> (usize, usize) {
        self.all().iter().fold((0, 0), |(c, p), h| {
            let m = h.meta.lock();
            (c + m.sub, p + m.psub)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_lines_have_redis_fields() {
        let r = Registry::default();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let l: SocketAddr = "127.0.0.1:26379".parse().unwrap();
        let c1 = r.add(a, l, 7);
        let c2 = r.add(a, l, 8);
        assert!(c2.id > c1.id);
        c1.meta.lock().name = Some("app".into());
        c1.meta.lock().last_cmd = "client|list";
        let line = c1.line(Instant::now());
        assert!(line.starts_with(&format!("id={} addr=127.0.0.1:5000 laddr=127.0.0.1:26379 fd=7 name=app age=0 idle=0 flags=N db=0 sub=0 psub=0", c1.id)), "{line}");
        assert!(line.contains(" cmd=client|list user=default redir=-1 resp=2 lib-name= lib-ver="));
        assert_eq!(r.all().len(), 2);
        r.remove(c1.id);
        assert_eq!(r.all().len(), 1);
    }
}
