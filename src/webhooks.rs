//! `[[webhooks]]`: every event this node applies is POSTed as JSON to each configured URL,
//! in commit order, with retries. Every node posts every event, so a receiver sees each one
//! once per node and can deduplicate by `index` (the log index of the entry).
//!
//! HTTP/1.1 over plain TCP (`http://` only; put a local relay in front of an https endpoint).
//! With a secret, `X-Raft-Sentinel-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use std::time::Duration;

use ring::hmac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::config::Webhook;
use crate::consensus::{AppliedEvent, RaftHandle};
use crate::model::NodeId;
use crate::shutdown::Shutdown;

/// Attempts per event before it is dropped (logged).
const ATTEMPTS: u32 = 6;
/// First retry delay; doubles per attempt.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Connect, send and answer, per attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "X-Raft-Sentinel-Signature";

/// The JSON body for one event.
pub fn body(me: NodeId, a: &AppliedEvent) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "node_id": me,
        "index": a.index,
        "event": a.event.kind,
        "payload": a.event.payload,
        "master": a.event.master,
        "observer": a.event.node,
    }))
    .expect("JSON of strings and integers")
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    let mut s = String::from("sha256=");
    for b in tag.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One POST; Ok on a 2xx status.
async fn post(hook: &Webhook, body: &[u8]) -> Result<(), String> {
    let fut = async {
        let mut s = TcpStream::connect(&hook.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            hook.path,
            hook.authority,
            body.len()
        );
        if let Some(secret) = &hook.secret {
            req.push_str(&format!(
                "{SIGNATURE_HEADER}: {}\r\n",
                signature(secret, body)
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        s.write_all(body).await.map_err(|e| format!("send: {e}"))?;
        // The status line is all that matters.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("no HTTP status in {:?}", line.lines().next()))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Posts every applied event to `hook` until shutdown.
pub async fn run(raft: RaftHandle, hook: Webhook, mut shutdown: Shutdown) {
    let mut events = raft.subscribe_events();
    let me = raft.node_id();
    loop {
        let a = tokio::select! {
            _ = shutdown.recv() => return,
            ev = events.recv() => match ev {
                Ok(a) => a,
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, url = %hook.url, "webhook fell behind; events not posted");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        let body = body(me, &a);
        let mut delay = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            match post(&hook, &body).await {
                Ok(()) => {
                    debug!(index = a.index, event = %a.event.kind, "webhook posted");
                    break;
                }
                Err(e) if attempt == ATTEMPTS => {
                    warn!(url = %hook.url, index = a.index, event = %a.event.kind, error = %e, "webhook failed; event dropped");
                }
                Err(e) => {
                    warn!(url = %hook.url, attempt, error = %e, "webhook failed; retrying");
                    tokio::select! {
                        _ = shutdown.recv() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
