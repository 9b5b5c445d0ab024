//! Accept loop and per-client handler (mini-redis `server.rs` shape).
//!
//! - A `Semaphore` caps connections; a client over the cap gets Redis's
//!   `-ERR max number of clients reached` and is closed.
//! - Each connection runs in its own task with a `resp_conn{peer}` span (debug level). It decodes every
//!   complete request in its buffer, runs them in order, and writes the replies in one go;
//!   between batches it waits for input, Pub/Sub events, CLIENT KILL and shutdown.
//! - Memory per client is bounded: input by the request limits, output because replies are
//!   written before more input is read, and a client that does not read for
//!   [`RespOptions::write_timeout`] is dropped; a subscriber that falls behind the event
//!   broadcast is dropped too (Redis's `client-output-buffer-limit pubsub` does the same),
//!   so it reconnects and re-reads the state instead of silently missing a switch.
//! - On shutdown the listener closes at once; connections finish their current command
//!   and close, within [`RespOptions::drain_grace`], after which the rest are aborted.
//!
//! [`RespOptions::write_timeout`]: super::RespOptions::write_timeout
//! [`RespOptions::drain_grace`]: super::RespOptions::drain_grace

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::stream::ClientStream;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tracing::{debug, debug_span, error, info, info_span, warn, Instrument};

use super::budget::Charge;
use super::clients::Limit;
use super::cmd::{self, pubsub, sentinel, Reply, Session, Shared};
use super::connection::{Connection, Incoming, Io, FLUSH_AT};
use super::fast::{AddrView, LOOKUP_FULLNAME};
use super::frame::{Frame, Protocol};
use super::node_events::{self, LocalEvent};
use super::{ProtocolError, RespContext, RespOptions};
use crate::consensus::AppliedEvent;
use crate::shutdown::Shutdown;

/// Longest pause after a failed accept (too many open files and the like).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Events coalesced into one write.
const EVENT_BATCH: usize = 64;
/// Sent to a connection refused while the port is over its buffer budget.
const OVER_BUDGET: &[u8] = b"-ERR server is over its client buffer budget, try again later\r\n";

/// Why a connection ended (logged at debug).
#[derive(Debug)]
enum Close {
    Eof,
    EofMidRequest,
    Quit,
    Killed,
    Shutdown,
    Protocol(ProtocolError),
    Io(std::io::Error),
    Lagged(u64),
    Idle,
    Stale,
    /// Did not authenticate in time.
    Unauthenticated,
    /// A request did not arrive whole within the request timeout.
    SlowRequest,
    /// Closed to bring the port back under its buffer budget.
    OverBudget,
    /// A subscriber over its Pub/Sub output limit.
    PubsubOutput(usize),
}

impl Close {
    /// The limit that closed it, if one did (counted per limit in the port's statistics).
    fn limit(&self) -> Option<Limit> {
        Some(match self {
            Close::Idle => Limit::IdleTimeout,
            Close::Unauthenticated => Limit::UnauthTimeout,
            Close::SlowRequest => Limit::RequestTimeout,
            Close::OverBudget => Limit::BudgetEvicted,
            Close::PubsubOutput(_) => Limit::PubsubOutput,
            Close::Lagged(_) => Limit::PubsubLag,
            Close::Protocol(
                ProtocolError::RequestTooLarge(_)
                | ProtocolError::UnauthenticatedBulkLength
                | ProtocolError::UnauthenticatedMultibulkLength,
            ) => Limit::RequestTooLarge,
            Close::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Limit::WriteTimeout,
            _ => return None,
        })
    }
}

/// Runs the port until `shutdown`, then drains.
pub async fn run(listener: TcpListener, ctx: RespContext, mut shutdown: Shutdown) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let sh = Arc::new(Shared::new(ctx, port));
    let publisher = node_events::publish(
        sh.ctx.tilt.clone(),
        sh.local_events.clone(),
        shutdown.clone(),
    );
    tokio::spawn(publisher.instrument(info_span!("node_events", port)));
    let opts = sh.ctx.options.clone();
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let budget = sh.budget.clone();
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    info!(
        port,
        max_connections = opts.max_connections,
        "sentinel port serving"
    );
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    sh.stats.connections_received.fetch_add(1, Ordering::Relaxed);
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        sh.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                        sh.stats.limits.hit(Limit::MaxConnections);
                        refuse(stream, b"-ERR max number of clients reached\r\n");
                        warn!(%peer, "connection refused: max number of clients reached");
                        continue;
                    };
                    if budget.over() {
                        sh.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                        sh.stats.limits.hit(Limit::BudgetRefused);
                        refuse(stream, OVER_BUDGET);
                        debug!(%peer, used = budget.used(), "connection refused: client buffers over budget");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let sh = sh.clone();
                    let shutdown = shutdown.clone();
                    // A debug span: it costs nothing at the default level, where it would
                    // otherwise take a few hundred bytes per connection. Warnings about a
                    // connection name its peer themselves.
                    conns.spawn(
                        handle(stream, peer, sh, shutdown, permit)
                            .instrument(debug_span!("resp_conn", %peer)),
                    );
                }
                Err(e) => {
                    // Usually EMFILE: back off so the loop does not spin, keep serving.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            },
        }
    }
    drop(listener);
    // Connections close once their current command is done. One that registers after this
    // sees the shutdown itself (see `handle`).
    for c in sh.clients.all() {
        c.kill.fire();
    }
    let open = conns.len();
    if open > 0 {
        info!(open, "sentinel port draining connections");
    }
    let grace = tokio::time::sleep(opts.drain_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = &mut grace => {
                warn!(left = conns.len(), "drain grace over: aborting connections");
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                break;
            }
            next = conns.join_next() => if next.is_none() { break },
        }
    }
    info!("sentinel port stopped");
}

/// Sends a refused client its error and closes it: best effort, never blocking the accept
/// loop. The write goes straight to the socket: tokio's `try_write` on a socket accepted a
/// moment ago can report WouldBlock before the reactor has seen it writable, and the client
/// would then see a bare close instead of the reason.
fn refuse(stream: TcpStream, msg: &[u8]) {
    if let Ok(mut s) = stream.into_std() {
        let _ = std::io::Write::write(&mut s, msg);
    }
}

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    sh: Arc<Shared>,
    shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let laddr = stream.local_addr().unwrap_or(peer);
    #[cfg(unix)]
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream) as i64;
    #[cfg(not(unix))]
    let fd = -1;
    let opts = &sh.ctx.options;
    // TLS handshake (when configured) before the client counts as connected.
    let stream = match &opts.tls {
        None => ClientStream::Plain(stream),
        // Boxed, as it is large and over once the connection is served.
        Some(acceptor) => match Box::pin(handshake(acceptor, stream, opts.write_timeout)).await {
            Some(s) => s,
            None => return,
        },
    };
    let client = sh.clients.add(peer, laddr, fd);
    // The port fires every registered client's kill switch on shutdown; one registered
    // after that sees the shutdown here.
    if shutdown.is_shutdown() {
        client.kill.fire();
    }
    sh.stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection::new(stream, opts.limits, opts.write_timeout);
    let mut session = Session::new(client.clone(), sh.ctx.requirepass.is_some());
    let mut charge = Charge::new(sh.budget.clone(), client.clone());
    let why = serve_client(&mut conn, &mut session, &sh, &mut charge).await;
    drop(charge);
    let why = match why {
        Close::Killed if client.evicted.load(Ordering::Relaxed) => Close::OverBudget,
        Close::Killed if shutdown.is_shutdown() => Close::Shutdown,
        other => other,
    };
    if let Some(l) = why.limit() {
        sh.stats.limits.hit(l);
    }
    match &why {
        Close::Lagged(n) => warn!(
            %peer,
            missed = n,
            "subscriber fell behind the event stream; disconnected"
        ),
        Close::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            warn!(%peer, error = %e, "client stopped reading its replies; disconnected")
        }
        Close::Protocol(e) => debug!(error = %e, "protocol error; disconnected"),
        Close::PubsubOutput(n) => warn!(
            %peer,
            pending = n,
            "subscriber over the Pub/Sub output limit; disconnected"
        ),
        other => debug!(reason = ?other, "connection closed"),
    }
    sh.stats.add_traffic(conn.take_traffic());
    sh.clients.remove(client.id);
    sh.stats.connected.fetch_sub(1, Ordering::Relaxed);
}

/// The TLS handshake; a client that stalls it is dropped like any other slow client.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<ClientStream> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(ClientStream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            None
        }
    }
}

/// Waits for the next event, or forever when not subscribed.
async fn next_event(
    rx: &mut Option<broadcast::Receiver<AppliedEvent>>,
) -> Result<Box<AppliedEvent>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await.map(Box::new),
        None => std::future::pending().await,
    }
}

/// Waits for the next of this node's own events, or forever when not subscribed.
async fn next_local(
    rx: &mut Option<broadcast::Receiver<LocalEvent>>,
) -> Result<LocalEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits (briefly) until this node's published state includes entry `index`. The Raft task
/// sends an entry's events just before it publishes the state they describe; a client that
/// reacts to an event by asking this node (Lettuce refreshes on `+switch-master`) must be
/// answered from that state, as Sentinel updates its state before it publishes.
async fn state_includes(sh: &Shared, index: u64) {
    if sh.ctx.raft.state().applied_index >= index {
        return;
    }
    let mut w = sh.ctx.raft.watch_state();
    // Bounded: an event must never be held back for long, whatever happens to the state.
    // Boxed: rarely needed, and large.
    let _ = Box::pin(tokio::time::timeout(
        Duration::from_secs(1),
        w.wait_for(|st| st.applied_index >= index),
    ))
    .await;
}

/// A time limit that closes a connection when reached.
#[derive(Clone, Copy, Debug)]
enum Deadline {
    Idle,
    Unauthenticated,
    Request,
    PubsubSoft,
    Write,
}

impl Deadline {
    /// Why the connection closes when this limit is reached.
    fn close(self, conn: &Connection, write_timeout: Duration) -> Close {
        match self {
            Deadline::Idle => Close::Idle,
            Deadline::Unauthenticated => Close::Unauthenticated,
            Deadline::Request => Close::SlowRequest,
            Deadline::PubsubSoft => Close::PubsubOutput(conn.pending_output()),
            Deadline::Write => Close::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("client took no output for {write_timeout:?}"),
            )),
        }
    }
}

/// The earliest of `deadlines` (the first listed on a tie).
fn earliest<const N: usize>(
    deadlines: [(Option<Instant>, Deadline); N],
) -> Option<(Instant, Deadline)> {
    deadlines
        .into_iter()
        .fold(None, |best, (at, d)| match (best, at) {
            (_, None) => best,
            (Some((b, _)), Some(t)) if b <= t => best,
            (_, Some(t)) => Some((t, d)),
        })
}

/// A connection's time limits between batches: when each started, and one timer for the
/// earliest (an idle connection's task stays small, and a wake-up polls one timer, not five).
struct Clock {
    /// An unauthenticated connection must authenticate by then.
    auth_deadline: Option<Instant>,
    /// When the request now at the front of the input started to arrive.
    partial_since: Option<Instant>,
    /// When pending Pub/Sub output last went out (or, if none was pending, was queued).
    out_progress: Instant,
    /// Since when pending Pub/Sub output is above the soft limit.
    soft_since: Option<Instant>,
    /// The limit `timer` is set for, if any applies now.
    next: Option<Deadline>,
    /// Made on first need and reused. Boxed: most connections never need one, and it is
    /// larger than the rest of what an idle connection waits on.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    fn new(opts: &RespOptions) -> Clock {
        Clock {
            auth_deadline: opts.unauth_idle_timeout.map(|d| Instant::now() + d),
            partial_since: None,
            out_progress: Instant::now(),
            soft_since: None,
            next: None,
            timer: None,
        }
    }

    /// Sets the timer for the earliest of the limits that apply now.
    fn arm(&mut self, conn: &Connection, s: &Session, opts: &RespOptions) {
        let write = (conn.pending_output() > 0).then(|| self.out_progress + opts.write_timeout);
        let soft = self.soft_since.map(|t| t + opts.pubsub_soft_time);
        let request = self.partial_since.zip(opts.request_timeout);
        let auth = self.auth_deadline.filter(|_| !s.authed);
        let idle = opts.idle_timeout.filter(|_| !s.subscribed());
        let next = earliest([
            (idle.map(|d| Instant::now() + d), Deadline::Idle),
            (auth, Deadline::Unauthenticated),
            (request.map(|(t, d)| t + d), Deadline::Request),
            (soft, Deadline::PubsubSoft),
            (write, Deadline::Write),
        ]);
        self.next = next.map(|(at, d)| {
            match &mut self.timer {
                Some(t) => t.as_mut().reset(at),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            d
        });
    }

    /// Resolves when the limit armed is reached; never while none is.
    fn expired(&mut self) -> impl Future<Output = Deadline> + '_ {
        std::future::poll_fn(|cx| match (self.next, self.timer.as_mut()) {
            (Some(d), Some(t)) => t.as_mut().poll(cx).map(|()| d),
            _ => Poll::Pending,
        })
    }

    /// The Pub/Sub output limits, checked whenever events were queued or written.
    fn check_output(&mut self, conn: &Connection, opts: &RespOptions) -> Option<Close> {
        let pending = conn.pending_output();
        if pending > opts.pubsub_hard_limit {
            return Some(Close::PubsubOutput(pending));
        }
        if pending > opts.pubsub_soft_limit {
            self.soft_since.get_or_insert_with(Instant::now);
        } else {
            self.soft_since = None;
        }
        None
    }
}

/// What one batch of requests did, counted into the port's statistics once per batch.
#[derive(Default)]
struct Batch {
    processed: u64,
    addr_lookups: u64,
    errors: u64,
    /// The stale guard, checked once per batch: a batch takes microseconds, the guard's
    /// horizon is an election timeout.
    fresh: Option<bool>,
    /// Whether the batch ended with a lookup, whose CLIENT LIST fields are then set once.
    last_was_lookup: bool,
}

impl Batch {
    fn report(&self, s: &Session, sh: &Shared) {
        if self.last_was_lookup {
            let mut m = s.handle.meta.lock();
            m.last_cmd = LOOKUP_FULLNAME;
            m.last_active = Some(Instant::now());
        }
        sh.stats
            .commands_processed
            .fetch_add(self.processed, Ordering::Relaxed);
        if self.addr_lookups > 0 {
            sh.stats
                .commands
                .add(cmd::table::CmdId::SentinelGetMasterAddr, self.addr_lookups);
        }
        if self.errors > 0 {
            sh.stats
                .error_replies
                .fetch_add(self.errors, Ordering::Relaxed);
        }
    }
}

/// Serves the connection until it closes: batches of buffered requests, and between them a
/// wait for input, Pub/Sub events, a kill or a time limit.
async fn serve_client(
    conn: &mut Connection,
    s: &mut Session,
    sh: &Shared,
    charge: &mut Charge,
) -> Close {
    let opts = &sh.ctx.options;
    let mut clock = Clock::new(opts);
    let mut view = AddrView::new(sh.ctx.raft.watch_state(), &sh.addr_tables);
    loop {
        let mut batch = Batch::default();
        let outcome = run_batch(conn, s, sh, &mut view, &mut batch).await;
        batch.report(s, sh);
        // Pending Pub/Sub output goes out by `write_some` in `wait`; replies to requests are
        // written in one go before more input is read (backpressure).
        if batch.processed > 0 || outcome.is_some() {
            if let Err(e) = conn.flush().await {
                return Close::Io(e);
            }
            // Nothing is pending now; `out_progress` is set when output is next queued.
            clock.soft_since = None;
        }
        if let Some(close) = outcome {
            return close;
        }
        settle(conn, sh, charge, &mut clock, batch.processed > 0);
        clock.arm(conn, s, opts);
        let woke = wait(conn, s, sh, &mut clock).await;
        let closed = match woke {
            Woke::Io => None,
            // Boxed: large, and only for subscribers.
            Woke::Event(ev) => Box::pin(deliver(*ev, conn, s, sh, &mut clock)).await,
            Woke::Local(ev) => {
                queue_events(conn, s, &mut clock, pubsub::deliver_local(ev, s));
                None
            }
            Woke::Close(close) => Some(close),
        };
        if let Some(close) = closed {
            return close;
        }
        if let Some(close) = clock.check_output(conn, opts) {
            return close;
        }
    }
}

/// Runs every complete request in the input, in order, queueing the replies (written early
/// only past [`FLUSH_AT`]). `Some` when the connection is to close after the replies.
async fn run_batch(
    conn: &mut Connection,
    s: &mut Session,
    sh: &Shared,
    view: &mut AddrView,
    b: &mut Batch,
) -> Option<Close> {
    loop {
        // Lookups take the pre-encoded path only where the general one would run them:
        // authenticated, and not in RESP2's Pub/Sub context.
        let lookups = s.authed && !(s.proto == Protocol::Resp2 && s.subscribed());
        match conn.next_request(s.authed, lookups) {
            Ok(Incoming::Pending) => return None,
            Ok(Incoming::Lookup(l)) => {
                b.processed += 1;
                b.addr_lookups += 1;
                if !*b.fresh.get_or_insert_with(|| sentinel::fresh(sh)) {
                    return Some(Close::Stale);
                }
                conn.answer_lookup(l, view.current(&sh.addr_tables), s.proto);
                b.last_was_lookup = true;
            }
            Ok(Incoming::Request(args)) => {
                b.processed += 1;
                b.last_was_lookup = false;
                // Boxed: the largest command's future would otherwise size every
                // connection's task, idle or not.
                match Box::pin(cmd::execute(args, s, sh)).await {
                    Reply::One(f) => {
                        b.errors += f.is_error() as u64;
                        conn.push(&f, s.proto);
                    }
                    Reply::Many(fs) => {
                        for f in &fs {
                            b.errors += f.is_error() as u64;
                            conn.push(f, s.proto);
                        }
                    }
                    Reply::Drop => return Some(Close::Stale),
                }
                if s.close_after_reply {
                    return Some(Close::Quit);
                }
            }
            Err(e) => {
                if e.has_reply() {
                    b.errors += 1;
                    conn.push(&Frame::error(e.to_string()), s.proto);
                }
                return Some(Close::Protocol(e));
            }
        }
        if conn.pending_output() >= FLUSH_AT {
            if let Err(e) = conn.flush().await {
                return Some(Close::Io(e));
            }
        }
    }
}

/// After a batch: counts the traffic, notes when a partial request started, gives back input
/// memory not needed while waiting, and charges the rest to the port's buffer budget.
fn settle(
    conn: &mut Connection,
    sh: &Shared,
    charge: &mut Charge,
    clock: &mut Clock,
    processed: bool,
) {
    sh.stats.add_traffic(conn.take_traffic());
    if !conn.has_partial_input() {
        clock.partial_since = None;
    } else if processed || clock.partial_since.is_none() {
        clock.partial_since = Some(Instant::now());
    }
    conn.park_input();
    if charge.set(conn.footprint()) {
        sh.budget.evict(&sh.clients);
    }
}

/// What ended a [`wait`].
enum Woke {
    /// Input was read or pending output written: carry on.
    Io,
    /// An event to deliver (boxed: an event is larger than all else a connection waits with).
    Event(Box<AppliedEvent>),
    /// One of this node's own events to deliver.
    Local(LocalEvent),
    Close(Close),
}

/// Waits for input, a Pub/Sub event, a kill or a time limit, and takes input or writes
/// pending output.
async fn wait(conn: &mut Connection, s: &mut Session, sh: &Shared, clock: &mut Clock) -> Woke {
    // Pending Pub/Sub output first: input waits until the client takes its events, the
    // same backpressure as for replies.
    let write = conn.pending_output() > 0;
    tokio::select! {
        biased;
        _ = s.handle.kill.fired() => Woke::Close(Close::Killed),
        ev = next_event(&mut s.events) => match ev {
            Ok(ev) => Woke::Event(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => Woke::Close(Close::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => Woke::Close(Close::Shutdown),
        },
        ev = next_local(&mut s.local) => match ev {
            Ok(ev) => Woke::Local(ev),
            Err(broadcast::error::RecvError::Lagged(n)) => Woke::Close(Close::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => Woke::Close(Close::Shutdown),
        },
        io = conn.read_or_write(write) => match io {
            Ok(Io::Wrote) => {
                clock.out_progress = Instant::now();
                Woke::Io
            }
            Ok(Io::Read(0)) if conn.has_partial_input() => Woke::Close(Close::EofMidRequest),
            Ok(Io::Read(0)) => Woke::Close(Close::Eof),
            Ok(Io::Read(_)) => Woke::Io,
            Err(e) => Woke::Close(Close::Io(e)),
        },
        reached = clock.expired() => {
            Woke::Close(reached.close(conn, sh.ctx.options.write_timeout))
        }
    }
}

/// Queues `first` and the events already waiting behind it (one write for all), once this
/// node's state includes them.
async fn deliver(
    first: AppliedEvent,
    conn: &mut Connection,
    s: &mut Session,
    sh: &Shared,
    clock: &mut Clock,
) -> Option<Close> {
    let mut batch = vec![first];
    for _ in 0..EVENT_BATCH {
        let Some(rx) = s.events.as_mut() else { break };
        match rx.try_recv() {
            Ok(ev) => batch.push(ev),
            Err(broadcast::error::TryRecvError::Lagged(n)) => return Some(Close::Lagged(n)),
            Err(_) => break,
        }
    }
    let last = batch.last().map_or(0, |ev| ev.index);
    state_includes(sh, last).await;
    let me = sh.ctx.raft.node_id();
    let frames = batch.iter().flat_map(|ev| pubsub::deliver(ev, s, me));
    queue_events(conn, s, clock, frames.collect());
    None
}

/// Queues event frames behind any pending output (written as the client takes it).
fn queue_events(conn: &mut Connection, s: &Session, clock: &mut Clock, frames: Vec<Frame>) {
    if conn.pending_output() == 0 {
        clock.out_progress = Instant::now();
    }
    for f in &frames {
        conn.push(f, s.proto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_deadline_wins_and_ties_go_to_the_first_listed() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let name = |d: Option<(Instant, Deadline)>| d.map(|(at, d)| (at, format!("{d:?}")));
        assert_eq!(earliest::<0>([]).map(|d| d.0), None);
        assert_eq!(
            name(earliest([(None, Deadline::Idle), (None, Deadline::Write)])),
            None
        );
        assert_eq!(
            name(earliest([
                (Some(t + 2 * s), Deadline::Idle),
                (None, Deadline::Unauthenticated),
                (Some(t + s), Deadline::Request),
                (Some(t + s), Deadline::Write),
                (Some(t + 3 * s), Deadline::PubsubSoft),
            ])),
            Some((t + s, "Request".to_string()))
        );
    }
}
