//! Accept loop and per-client handler (mini-redis `server.rs` shape).
//!
//! - A `Semaphore` caps connections; a client over the cap gets Redis's
//!   `-ERR max number of clients reached` and is closed.
//! - Each connection runs in its own task with a `resp_conn{peer}` span. It decodes every
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

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::stream::ClientStream;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::budget::Charge;
use super::clients::Limit;
use super::cmd::{self, pubsub, sentinel, Reply, Session, Shared};
use super::connection::{Connection, Incoming, Io, FLUSH_AT};
use super::fast::{AddrView, LOOKUP_FULLNAME};
use super::frame::{Frame, Protocol};
use super::{ProtocolError, RespContext};
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
                    conns.spawn(
                        handle(stream, peer, sh, shutdown, permit)
                            .instrument(info_span!("resp_conn", %peer)),
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
    // TLS handshake (when configured) before the client counts as connected; a client that
    // stalls it is dropped like any other slow client.
    let stream = match &opts.tls {
        None => ClientStream::Plain(stream),
        Some(acceptor) => {
            // Boxed, as it is large and over once the connection is served.
            let accept = Box::pin(acceptor.accept(stream));
            match tokio::time::timeout(opts.write_timeout, accept).await {
                Ok(Ok(s)) => ClientStream::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake timed out");
                    return;
                }
            }
        }
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
            missed = n,
            "subscriber fell behind the event stream; disconnected"
        ),
        Close::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            warn!(error = %e, "client stopped reading its replies; disconnected")
        }
        Close::Protocol(e) => debug!(error = %e, "protocol error; disconnected"),
        Close::PubsubOutput(n) => warn!(
            pending = n,
            "subscriber over the Pub/Sub output limit; disconnected"
        ),
        other => debug!(reason = ?other, "connection closed"),
    }
    sh.stats.add_traffic(conn.take_traffic());
    sh.clients.remove(client.id);
    sh.stats.connected.fetch_sub(1, Ordering::Relaxed);
}

/// Waits for the next event, or forever when not subscribed.
async fn next_event(
    rx: &mut Option<broadcast::Receiver<AppliedEvent>>,
) -> Result<AppliedEvent, broadcast::error::RecvError> {
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
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        w.wait_for(|st| st.applied_index >= index),
    )
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

/// Sleeps until the deadline and names it, or forever when None.
async fn until(next: Option<(Instant, Deadline)>) -> Deadline {
    match next {
        Some((t, d)) => {
            tokio::time::sleep_until(t).await;
            d
        }
        None => std::future::pending().await,
    }
}

async fn serve_client(
    conn: &mut Connection,
    s: &mut Session,
    sh: &Shared,
    charge: &mut Charge,
) -> Close {
    let me = sh.ctx.raft.node_id();
    let opts = &sh.ctx.options;
    let idle_limit = opts.idle_timeout;
    let auth_deadline = opts.unauth_idle_timeout.map(|d| Instant::now() + d);
    // When the request now at the front of the input started to arrive.
    let mut partial_since: Option<Instant> = None;
    // When pending Pub/Sub output last went out (or, if none was pending, was queued), and
    // since when it is above the soft limit.
    let mut out_progress = Instant::now();
    let mut soft_since: Option<Instant> = None;
    let mut view = AddrView::new(sh.ctx.raft.watch_state(), &sh.addr_tables);
    loop {
        let mut processed = 0u64;
        let mut addr_lookups = 0u64;
        let mut errors = 0u64;
        // The stale guard is checked once per batch: a batch takes microseconds, the
        // guard's horizon is an election timeout.
        let mut fresh: Option<bool> = None;
        // Whether the batch ended with a lookup, whose CLIENT LIST fields are then set once.
        let mut last_was_lookup = false;
        let outcome = loop {
            // Lookups take the pre-encoded path only where the general one would run them:
            // authenticated, and not in RESP2's Pub/Sub context.
            let lookups = s.authed && !(s.proto == Protocol::Resp2 && s.subscribed());
            match conn.next_request(s.authed, lookups) {
                Ok(Incoming::Pending) => break None,
                Ok(Incoming::Lookup(l)) => {
                    processed += 1;
                    addr_lookups += 1;
                    if !*fresh.get_or_insert_with(|| sentinel::fresh(sh)) {
                        break Some(Close::Stale);
                    }
                    conn.answer_lookup(l, view.current(&sh.addr_tables), s.proto);
                    last_was_lookup = true;
                    if conn.pending_output() >= FLUSH_AT {
                        if let Err(e) = conn.flush().await {
                            break Some(Close::Io(e));
                        }
                    }
                }
                Ok(Incoming::Request(args)) => {
                    processed += 1;
                    last_was_lookup = false;
                    // Boxed: the largest command's future would otherwise size every
                    // connection's task, idle or not (about 2 KiB of its 3).
                    match Box::pin(cmd::execute(args, s, sh)).await {
                        Reply::One(f) => {
                            errors += f.is_error() as u64;
                            conn.push(&f, s.proto);
                        }
                        Reply::Many(fs) => {
                            for f in &fs {
                                errors += f.is_error() as u64;
                                conn.push(f, s.proto);
                            }
                        }
                        Reply::Drop => break Some(Close::Stale),
                    }
                    if s.close_after_reply {
                        break Some(Close::Quit);
                    }
                    if conn.pending_output() >= FLUSH_AT {
                        if let Err(e) = conn.flush().await {
                            break Some(Close::Io(e));
                        }
                    }
                }
                Err(e) => {
                    if e.has_reply() {
                        errors += 1;
                        conn.push(&Frame::error(e.to_string()), s.proto);
                    }
                    break Some(Close::Protocol(e));
                }
            }
        };
        if last_was_lookup {
            let mut m = s.handle.meta.lock();
            m.last_cmd = LOOKUP_FULLNAME;
            m.last_active = Some(Instant::now());
        }
        sh.stats
            .commands_processed
            .fetch_add(processed, Ordering::Relaxed);
        if addr_lookups > 0 {
            sh.stats
                .commands
                .add(cmd::table::CmdId::SentinelGetMasterAddr, addr_lookups);
        }
        if errors > 0 {
            sh.stats.error_replies.fetch_add(errors, Ordering::Relaxed);
        }
        // Pending Pub/Sub output goes out by `write_some` below; replies to requests are
        // written in one go before more input is read (backpressure).
        if processed > 0 || outcome.is_some() {
            if let Err(e) = conn.flush().await {
                return Close::Io(e);
            }
            // Nothing is pending now; `out_progress` is set when output is next queued.
            soft_since = None;
        }
        if let Some(close) = outcome {
            return close;
        }
        sh.stats.add_traffic(conn.take_traffic());
        if conn.has_partial_input() {
            if processed > 0 || partial_since.is_none() {
                partial_since = Some(Instant::now());
            }
        } else {
            partial_since = None;
            conn.release_input();
        }
        if charge.set(conn.footprint()) {
            sh.budget.evict(&sh.clients);
        }
        let pending_out = conn.pending_output();
        let write_deadline = (pending_out > 0).then(|| out_progress + opts.write_timeout);
        let soft_deadline = soft_since.map(|t| t + opts.pubsub_soft_time);
        let request_deadline = partial_since.zip(opts.request_timeout).map(|(t, d)| t + d);
        let auth_deadline = auth_deadline.filter(|_| !s.authed);
        let idle_deadline = idle_limit
            .filter(|_| !s.subscribed())
            .map(|d| Instant::now() + d);
        // One timer, for the earliest limit: an idle connection's task stays small, and a
        // wake-up polls one timer instead of five.
        let next_deadline = earliest([
            (idle_deadline, Deadline::Idle),
            (auth_deadline, Deadline::Unauthenticated),
            (request_deadline, Deadline::Request),
            (soft_deadline, Deadline::PubsubSoft),
            (write_deadline, Deadline::Write),
        ]);

        tokio::select! {
            biased;
            _ = s.handle.kill.fired() => return Close::Killed,
            ev = next_event(&mut s.events) => match ev {
                Ok(ev) => {
                    // Coalesce whatever else is already queued into the same write.
                    let mut batch = vec![ev];
                    for _ in 0..EVENT_BATCH {
                        let Some(rx) = s.events.as_mut() else { break };
                        match rx.try_recv() {
                            Ok(ev) => batch.push(ev),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => return Close::Lagged(n),
                            Err(_) => break,
                        }
                    }
                    let last = batch.last().map_or(0, |ev| ev.index);
                    state_includes(sh, last).await;
                    if conn.pending_output() == 0 {
                        out_progress = Instant::now();
                    }
                    for ev in &batch {
                        for f in pubsub::deliver(ev, s, me) {
                            conn.push(&f, s.proto);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Close::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => return Close::Shutdown,
            },
            // Pending Pub/Sub output first: input waits until the client takes its events,
            // the same backpressure as for replies.
            io = conn.read_or_write(pending_out > 0) => match io {
                Ok(Io::Wrote) => out_progress = Instant::now(),
                Ok(Io::Read(0)) if conn.has_partial_input() => return Close::EofMidRequest,
                Ok(Io::Read(0)) => return Close::Eof,
                Ok(Io::Read(_)) => {}
                Err(e) => return Close::Io(e),
            },
            reached = until(next_deadline) => return match reached {
                Deadline::Idle => Close::Idle,
                Deadline::Unauthenticated => Close::Unauthenticated,
                Deadline::Request => Close::SlowRequest,
                Deadline::PubsubSoft => Close::PubsubOutput(conn.pending_output()),
                Deadline::Write => Close::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("client took no output for {:?}", opts.write_timeout),
                )),
            },
        }
        // Pub/Sub output limit, checked whenever events were queued or written.
        let pending = conn.pending_output();
        if pending > opts.pubsub_hard_limit {
            return Close::PubsubOutput(pending);
        }
        if pending > opts.pubsub_soft_limit {
            soft_since.get_or_insert_with(Instant::now);
        } else {
            soft_since = None;
        }
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
