//! Buffered request/reply I/O over one TCP stream.
//!
//! Reads go into one buffer that holds at most one request beyond what has been decoded
//! (bounded by [`Limits::max_request_len`]); replies are encoded into one output buffer that
//! is written out when the input runs dry or the buffer passes [`FLUSH_AT`], so a pipeline of
//! thousands of commands costs few syscalls, and a client that stops reading makes the server
//! stop reading too (backpressure) instead of growing memory.

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use super::stream::ClientStream;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt;
use std::future::Future;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fast::{is_addr_lookup, match_lookup, AddrTable};
use super::frame::{self, Check, Frame, Heads, Limits, Protocol, ProtocolError, Scan};

/// Output is written out once this much is pending, even mid-pipeline.
pub const FLUSH_AT: usize = 64 * 1024;
/// Largest step by which the input buffer grows.
const READ_CHUNK: usize = 16 * 1024;
/// First size of a connection's input buffer (see [`make_room`]) and of its output buffer.
const READ_FIRST: usize = 1024;
/// Partial requests up to this long wait in a buffer of their own size (see
/// [`Connection::park_input`]).
const SHRINK_AT: usize = 256;
/// Spare buffers kept per thread (see [`SPARE`]).
const SPARE_MAX: usize = 64;

thread_local! {
    /// Emptied buffers of [`READ_FIRST`] bytes, for the next connection that needs one.
    /// Connections give their buffers back when empty, so idle ones hold none, and take one
    /// when input or output arrives: with this a short request costs no allocation. At most
    /// [`SPARE_MAX`] per thread (64 KiB), outside the buffer budget.
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`READ_FIRST`] bytes, spare if there is one.
fn take_buf() -> BytesMut {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_FIRST))
}

/// Gives back an emptied buffer from [`take_buf`] that was neither reallocated nor split
/// (the caller tracks that: `capacity` alone does not show an allocation's size once the
/// front was consumed).
fn give_buf(mut buf: BytesMut) {
    buf.clear();
    // Moves the start back to the front of the allocation (no copy: it is empty).
    if buf.try_reclaim(READ_FIRST) && buf.capacity() == READ_FIRST {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_MAX {
                s.push(buf);
            }
        });
    }
}

/// One request taken from the input.
#[derive(Debug)]
pub enum Incoming {
    /// Arguments of a complete request (at least one).
    Request(Vec<Bytes>),
    /// A complete master-address lookup, left in the input buffer: answer it with
    /// [`Connection::answer_lookup`], which also consumes it.
    Lookup(Lookup),
    /// Nothing complete is buffered.
    Pending,
}

/// What [`Connection::read_or_write`] did.
#[derive(Debug)]
pub enum Io {
    /// Read this many bytes (0: EOF).
    Read(usize),
    /// Wrote some pending output.
    Wrote,
}

/// Where a lookup request and its name argument sit in the input buffer.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    len: usize,
    name: (usize, usize),
}

/// A client connection: the stream and its two buffers.
#[derive(Debug)]
pub struct Connection {
    stream: ClientStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Whether `rbuf` / `wbuf` came from [`take_buf`] and were not reallocated or split since,
    /// so they may go back to the spares.
    rbuf_spare: bool,
    wbuf_spare: bool,
    limits: Limits,
    /// Where the request at the front of `rbuf` was left by the last scan (see
    /// [`frame::check_resume`]).
    heads: Heads,
    scan: Scan,
    write_timeout: Duration,
    /// Bytes read and written since the last [`Connection::take_traffic`], for INFO stats.
    read_bytes: u64,
    written_bytes: u64,
}

impl Connection {
    /// Wraps an accepted stream.
    pub fn new(stream: ClientStream, limits: Limits, write_timeout: Duration) -> Connection {
        Connection {
            stream,
            // Buffers are allocated on first use and given back when empty, so idle
            // connections hold no buffer memory.
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            rbuf_spare: false,
            wbuf_spare: false,
            limits,
            heads: Heads::default(),
            scan: Scan::default(),
            write_timeout,
            read_bytes: 0,
            written_bytes: 0,
        }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &ClientStream {
        &self.stream
    }

    /// Reads whatever the socket has. Cancel-safe: may sit in `select!`. `Ok(0)` is EOF.
    ///
    /// Input memory is taken only for the read itself: while the socket has nothing, the
    /// connection holds no buffer, or only its partial request (see [`Connection::park_input`]).
    pub async fn read_more(&mut self) -> io::Result<usize> {
        let n = std::future::poll_fn(|cx| {
            if let ClientStream::Plain(s) = &self.stream {
                std::task::ready!(s.poll_read_ready(cx))?;
            }
            make_room(&mut self.rbuf, &mut self.rbuf_spare);
            // Through `AsyncRead`, not `try_read_buf`: a read that fills less than the room
            // offered clears the socket's readiness (the socket is drained; with
            // edge-triggered epoll this is safe), so the next wait goes straight to the
            // reactor instead of costing a read that returns EAGAIN: one read per request
            // instead of two.
            let polled = std::pin::pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx);
            if polled.is_pending() {
                // A false alarm (a fresh connection's first wake-up is one).
                self.park_input();
            }
            polled
        })
        .await?;
        self.read_bytes += n as u64;
        Ok(n)
    }

    /// Gives back the input memory a connection does not need while it waits: an empty
    /// buffer goes back to the spares, and a short partial request moves into a buffer of
    /// its own size, so a client that trickles a request (slowloris) holds tens of bytes
    /// between reads instead of a whole buffer. A request longer than [`SHRINK_AT`] keeps
    /// its buffer.
    pub fn park_input(&mut self) {
        let len = self.rbuf.len();
        if len > SHRINK_AT || self.rbuf.capacity() == len {
            return;
        }
        let kept = if len == 0 {
            BytesMut::new()
        } else {
            BytesMut::from(&self.rbuf[..])
        };
        let old = std::mem::replace(&mut self.rbuf, kept);
        if std::mem::take(&mut self.rbuf_spare) {
            give_buf(old);
        }
    }

    /// Bytes of memory the two buffers hold (charged against the port's buffer budget).
    pub fn footprint(&self) -> usize {
        self.rbuf.capacity() + self.wbuf.capacity()
    }

    /// Writes some pending output when `write`, else reads. Cancel-safe.
    pub async fn read_or_write(&mut self, write: bool) -> io::Result<Io> {
        if write {
            self.write_some().await.map(|_| Io::Wrote)
        } else {
            self.read_more().await.map(Io::Read)
        }
    }

    /// Writes some pending output without waiting for all of it (Pub/Sub delivery, where
    /// events keep arriving while a slow subscriber reads). Cancel-safe.
    pub async fn write_some(&mut self) -> io::Result<usize> {
        let n = self.stream.write(&self.wbuf).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.written_bytes += n as u64;
        self.wbuf.advance(n);
        self.wbuf_spare = false;
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
            self.stream.flush().await?;
        }
        Ok(n)
    }

    /// Whether unparsed input is buffered (EOF then means a half-sent request).
    pub fn has_partial_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// Bytes buffered on input and output (`qbuf`, `omem` in CLIENT LIST).
    pub fn buffered(&self) -> (usize, usize) {
        (self.rbuf.len(), self.wbuf.len())
    }

    /// Takes the next complete request from the input buffer, skipping empty ones. With
    /// `lookups`, a master-address lookup is returned as [`Incoming::Lookup`] instead of
    /// being split into owned arguments.
    pub fn next_request(&mut self, authed: bool, lookups: bool) -> Result<Incoming, ProtocolError> {
        loop {
            if lookups {
                if let Some((len, name)) = match_lookup(&self.rbuf, &self.limits) {
                    // Whole: whatever an earlier scan of this request left is done with.
                    self.scan = Scan::default();
                    return Ok(Incoming::Lookup(Lookup { len, name }));
                }
            }
            let check = frame::check_resume(
                &self.rbuf,
                &self.limits,
                authed,
                &mut self.heads,
                &mut self.scan,
            )?;
            match check {
                Check::Incomplete => return Ok(Incoming::Pending),
                Check::Empty(n) => self.rbuf.advance(n),
                Check::Request { len, .. }
                    if lookups && is_addr_lookup(&self.rbuf, &self.heads) =>
                {
                    return Ok(Incoming::Lookup(Lookup {
                        len,
                        name: self.heads.args[2],
                    }));
                }
                Check::Request { len, multibulk } => {
                    self.rbuf_spare = false;
                    let bytes = self.rbuf.split_to(len).freeze();
                    return Ok(Incoming::Request(frame::parse(bytes, multibulk)));
                }
            }
        }
    }

    /// Appends the reply `table` holds for the lookup's name, then drops the request from
    /// the input.
    pub fn answer_lookup(&mut self, l: Lookup, table: &AddrTable, proto: Protocol) {
        let (at, len) = l.name;
        self.out_room();
        self.wbuf
            .put_slice(table.reply(&self.rbuf[at..at + len], proto));
        self.rbuf.advance(l.len);
    }

    /// Encodes a reply into the output buffer.
    pub fn push(&mut self, frame: &Frame, proto: Protocol) {
        self.out_room();
        frame.encode(proto, &mut self.wbuf);
    }

    /// Takes an output buffer if there is none.
    fn out_room(&mut self) {
        if self.wbuf.capacity() == 0 {
            self.wbuf = take_buf();
            self.wbuf_spare = true;
        }
    }

    /// Bytes of encoded replies not yet written.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes out every pending reply. A client that does not take them within the write
    /// timeout is considered stuck: the caller drops the connection.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let n = self.wbuf.len();
        // Usually the socket takes it all at once: one write, no timer.
        let mut done = 0;
        if let ClientStream::Plain(s) = &mut self.stream {
            if let Some(r) = s.write(&self.wbuf).now_or_never() {
                done = r?;
                if done == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
            }
        }
        if done < n {
            // Boxed: the timed write is large and rare, and would otherwise size every
            // connection's task.
            Box::pin(self.write_rest(done)).await?;
        }
        self.written_bytes += n as u64;
        // Give the memory back: most connections send one request now and then.
        let buf = std::mem::take(&mut self.wbuf);
        if std::mem::take(&mut self.wbuf_spare) {
            give_buf(buf);
        }
        Ok(())
    }

    /// Writes the pending output from `done` on, within the write timeout, and flushes TLS
    /// (which may hold the last record until flushed).
    async fn write_rest(&mut self, done: usize) -> io::Result<()> {
        let rest = &self.wbuf[done..];
        match tokio::time::timeout(self.write_timeout, self.stream.write_all(rest)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("client took no output for {:?}", self.write_timeout),
                ))
            }
        }
        if let ClientStream::Tls(_) = self.stream {
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Returns and resets the byte counters.
    pub fn take_traffic(&mut self) -> (u64, u64) {
        let t = (self.read_bytes, self.written_bytes);
        self.read_bytes = 0;
        self.written_bytes = 0;
        t
    }
}

/// Room in `rbuf` for the next read. A fresh buffer starts at [`READ_FIRST`] and doubles in
/// steps of at most [`READ_CHUNK`]: most requests fit the first. A short partial request
/// parked in a buffer of its own size moves back into a spare one. `spare` tracks whether it
/// may go back to the spares.
fn make_room(rbuf: &mut BytesMut, spare: &mut bool) {
    if rbuf.capacity() == 0 {
        *rbuf = take_buf();
        *spare = true;
    } else if rbuf.capacity() < READ_FIRST && rbuf.len() <= SHRINK_AT {
        // A partial request shrunk while waiting: back into a spare buffer.
        let mut buf = take_buf();
        buf.extend_from_slice(rbuf);
        *rbuf = buf;
        *spare = true;
    } else if rbuf.capacity() - rbuf.len() < READ_FIRST / 2 {
        let grow = rbuf.capacity().clamp(READ_FIRST, READ_CHUNK);
        rbuf.reserve(grow);
        *spare = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    const LOOKUP: &[u8] =
        b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n";

    async fn pair() -> (Connection, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let conn = Connection::new(
            ClientStream::Plain(server),
            Limits::default(),
            Duration::from_secs(5),
        );
        (conn, client)
    }

    /// Waits on `read_more` the way the connection loop does, giving up after a while.
    async fn read_for(conn: &mut Connection, wait: Duration) -> Option<usize> {
        tokio::time::timeout(wait, conn.read_more())
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    /// A fresh socket reports itself readable once before any byte has arrived; a waiting
    /// connection must not keep the buffer it took for that read.
    #[tokio::test]
    async fn a_waiting_connection_holds_no_input_buffer() {
        let (mut conn, _client) = pair().await;
        for _ in 0..3 {
            assert_eq!(read_for(&mut conn, Duration::from_millis(50)).await, None);
            assert_eq!(conn.footprint(), 0);
        }
    }

    /// A request trickled in waits in a buffer of its own size between reads, and is still
    /// taken whole once its last byte arrives.
    #[tokio::test]
    async fn a_trickled_request_waits_in_a_buffer_of_its_own_size() {
        let (mut conn, mut client) = pair().await;
        for (i, chunk) in LOOKUP[..40].chunks(7).enumerate() {
            client.write_all(chunk).await.unwrap();
            assert_eq!(
                read_for(&mut conn, Duration::from_secs(5)).await,
                Some(chunk.len())
            );
            assert!(matches!(
                conn.next_request(true, false).unwrap(),
                Incoming::Pending
            ));
            conn.park_input();
            let held = (i * 7 + chunk.len()).min(40);
            assert_eq!(conn.footprint(), held, "after chunk {i}");
            // Nothing more yet: waiting keeps it at that.
            assert_eq!(read_for(&mut conn, Duration::from_millis(20)).await, None);
            assert_eq!(conn.footprint(), held);
        }
        client.write_all(&LOOKUP[40..]).await.unwrap();
        assert_eq!(
            read_for(&mut conn, Duration::from_secs(5)).await,
            Some(LOOKUP.len() - 40)
        );
        match conn.next_request(true, false).unwrap() {
            Incoming::Request(args) => assert_eq!(args[2].as_ref(), b"mymaster"),
            other => panic!("{other:?}"),
        }
        conn.park_input();
        assert_eq!(conn.footprint(), 0);
    }
}
