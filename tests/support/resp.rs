//! A raw RESP client for byte-exact tests of the Sentinel port: sends commands as multibulk
//! (or any raw bytes) and reads back exactly one reply, as bytes or as a parsed value.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed RESP2/RESP3 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+`
    Simple(String),
    /// `-`
    Error(String),
    /// `:`
    Int(i64),
    /// `$` (None: `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*` (None: `*-1`)
    Array(Option<Vec<Value>>),
    /// `%`
    Map(Vec<(Value, Value)>),
    /// `~`
    Set(Vec<Value>),
    /// `>`
    Push(Vec<Value>),
    /// `_`
    Null,
}

impl Value {
    /// Bulk or simple string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Simple(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Elements of an array, set or push.
    pub fn items(&self) -> Vec<Value> {
        match self {
            Value::Array(Some(v)) | Value::Set(v) | Value::Push(v) => v.clone(),
            _ => Vec::new(),
        }
    }

    /// Key/value pairs of a RESP3 map or a RESP2 flat array.
    pub fn pairs(&self) -> Vec<(String, Value)> {
        match self {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (k.text().unwrap_or_default(), v.clone()))
                .collect(),
            Value::Array(Some(v)) => v
                .chunks(2)
                .map(|c| (c[0].text().unwrap_or_default(), c[1].clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The text value of `key` in a map-like reply.
    pub fn field(&self, key: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.text())
    }
}

/// Parses one reply at the front of `buf`: `Some((value, bytes used))` or None if incomplete.
pub fn parse_reply(buf: &[u8]) -> Option<(Value, usize)> {
    let nl = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..nl]).ok()?.to_string();
    let after = nl + 2;
    let count = |l: &str| l.parse::<i64>().ok();
    let many = |n: i64, mut pos: usize| -> Option<(Vec<Value>, usize)> {
        let mut v = Vec::new();
        for _ in 0..n {
            let (x, used) = parse_reply(&buf[pos..])?;
            v.push(x);
            pos += used;
        }
        Some((v, pos))
    };
    match buf[0] {
        b'+' => Some((Value::Simple(line), after)),
        b'-' => Some((Value::Error(line), after)),
        b':' => Some((Value::Int(count(&line)?), after)),
        b'_' => Some((Value::Null, after)),
        b'$' => {
            let n = count(&line)?;
            if n < 0 {
                return Some((Value::Bulk(None), after));
            }
            let end = after + n as usize;
            if buf.len() < end + 2 {
                return None;
            }
            Some((Value::Bulk(Some(buf[after..end].to_vec())), end + 2))
        }
        b'*' | b'~' | b'>' => {
            let n = count(&line)?;
            if n < 0 {
                return Some((Value::Array(None), after));
            }
            let (v, pos) = many(n, after)?;
            Some((
                match buf[0] {
                    b'*' => Value::Array(Some(v)),
                    b'~' => Value::Set(v),
                    _ => Value::Push(v),
                },
                pos,
            ))
        }
        b'%' => {
            let n = count(&line)?;
            let (v, pos) = many(n * 2, after)?;
            let pairs = v.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
            Some((Value::Map(pairs), pos))
        }
        other => panic!("unexpected reply type byte {:?}", other as char),
    }
}

/// Encodes a command as a multibulk request.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).as_bytes());
        out.extend(a.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

/// One connection to a RESP port.
pub struct RespClient {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// How long a read may wait.
    pub timeout: Duration,
}

impl RespClient {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> RespClient {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        RespClient {
            stream,
            buf: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a command.
    pub async fn send(&mut self, args: &[&str]) {
        self.send_raw(&encode(args)).await;
    }

    /// Reads one reply: its exact bytes and its parsed value. Panics on timeout or EOF.
    pub async fn read(&mut self) -> (Vec<u8>, Value) {
        self.try_read().await.unwrap_or_else(|| {
            panic!(
                "connection closed or timed out; got {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// Like [`RespClient::read`], None on EOF or timeout.
    pub async fn try_read(&mut self) -> Option<(Vec<u8>, Value)> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some((v, used)) = (!self.buf.is_empty())
                .then(|| parse_reply(&self.buf))
                .flatten()
            {
                let raw: Vec<u8> = self.buf.drain(..used).collect();
                return Some((raw, v));
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and returns the exact bytes of its reply.
    pub async fn raw(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args).await;
        self.read().await.0
    }

    /// Sends each command in turn and checks the exact text of its reply.
    pub async fn expect_replies(&mut self, cases: &[(&[&str], &str)]) {
        for (args, want) in cases {
            let got = self.raw(args).await;
            assert_eq!(String::from_utf8_lossy(&got), *want, "reply to {args:?}");
        }
    }

    /// Sends a command and returns its parsed reply.
    pub async fn cmd(&mut self, args: &[&str]) -> Value {
        self.send(args).await;
        self.read().await.1
    }

    /// True if the server closes the connection (EOF or reset) within `limit`, with nothing
    /// (more) to read.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(_) => false,
        }
    }
}
