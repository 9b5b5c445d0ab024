//! The Sentinel port under misbehaving clients, against the real binary: slow and half-sent
//! requests are cut off at their limits, the buffered bytes of all connections stay within
//! the global budget, and a fresh client is still answered.

mod support;

use std::time::Duration;

use support::resp::RespClient;
use support::{Cluster, ClusterOpts, NodeProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn one_node(extra_toml: &str) -> Cluster {
    Cluster::start(ClusterOpts {
        nodes: 1,
        extra_toml: extra_toml.into(),
        // The test helpers reach the gRPC API with it (requirepass alone would guard it).
        api_password: Some("api-pw".into()),
        ..ClusterOpts::default()
    })
}

async fn ready(c: &Cluster) -> &NodeProcess {
    c.wait_leader(Duration::from_secs(20)).await;
    let n = c.node(1);
    support::eventually(Duration::from_secs(10), "sentinel port answers", || async {
        let mut cl = RespClient::connect(&n.sentinel_addr()).await;
        cl.send(&["PING"]).await;
        cl.try_read().await
    })
    .await;
    n
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Reads until EOF or error; returns how long it took, or None if still open at `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(start + limit, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_at_its_request_timeout() {
    let c = one_node("[sentinel_port]\nrequest_timeout_secs = 2\n");
    let n = ready(&c).await;
    let mut s = TcpStream::connect(n.sentinel_addr()).await.unwrap();
    // A valid request, one byte every 100 ms: it would take 20 s to complete.
    let req = b"*2\r\n$4\r\nPING\r\n$180\r\n".iter().copied();
    let req: Vec<u8> = req.chain(std::iter::repeat_n(b'x', 180)).collect();
    let start = Instant::now();
    let mut cut = None;
    for b in req {
        if s.write_all(&[b]).await.is_err() {
            cut = Some(start.elapsed());
            break;
        }
        if let Some(_d) = closed_within(&mut s, Duration::from_millis(100)).await {
            cut = Some(start.elapsed());
            break;
        }
    }
    let cut = cut.expect("a trickled request was never cut off");
    assert!(
        cut >= Duration::from_millis(1900) && cut < Duration::from_secs(6),
        "cut off after {cut:?}, limit is 2 s"
    );
    // A client sending whole requests slowly is not a slowloris: each request completes.
    let mut cl = RespClient::connect(&n.sentinel_addr()).await;
    for _ in 0..4 {
        cl.send(&["PING"]).await;
        assert_eq!(cl.read().await.1.text().as_deref(), Some("PONG"));
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_have_small_limits() {
    let c = one_node(
        "[security]\nrequirepass = \"s3cret\"\n[sentinel_port]\nunauth_idle_timeout_secs = 1\n",
    );
    let n = ready(&c).await;
    // Idle before AUTH: closed after the short timeout.
    let mut s = TcpStream::connect(n.sentinel_addr()).await.unwrap();
    let d = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("an idle unauthenticated client stays connected");
    assert!(d >= Duration::from_millis(900), "closed after {d:?}");
    // A pre-AUTH request of 9 bulks of 10 KB (each under Redis's 16 KiB pre-AUTH bulk limit)
    // is over the default 16 KiB pre-AUTH buffer: closed before it is complete.
    let mut s = TcpStream::connect(n.sentinel_addr()).await.unwrap();
    let mut req = b"*9\r\n".to_vec();
    for _ in 0..9 {
        req.extend_from_slice(b"$10000\r\n");
        req.extend(std::iter::repeat_n(b'a', 10000));
        req.extend_from_slice(b"\r\n");
    }
    let _ = s.write_all(&req[..req.len() - 2]).await;
    assert!(
        closed_within(&mut s, Duration::from_secs(3))
            .await
            .is_some(),
        "a 90 KB pre-AUTH request was buffered"
    );
    // After AUTH the same request is fine (it is an unknown command, answered with an error).
    let mut cl = RespClient::connect(&n.sentinel_addr()).await;
    cl.send(&["AUTH", "s3cret"]).await;
    assert_eq!(cl.read().await.1.text().as_deref(), Some("OK"));
    cl.send_raw(&req).await;
    let (raw, _) = cl.read().await;
    assert!(
        raw.starts_with(b"-ERR unknown command"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_sent_megabytes_stay_within_the_budget() {
    const CONNS: usize = 1000;
    const MIB: usize = 1 << 20;
    let c = one_node("");
    let n = ready(&c).await;
    let pid = n.pid().unwrap();
    let idle = rss_kib(pid);
    let addr = n.sentinel_addr();
    // Each client sends a request of exactly 1 MiB (the default per-connection limit) but
    // for its final CRLF, so it never completes and the whole of it is buffered.
    let header = format!("*2\r\n$4\r\nPING\r\n${}\r\n", MIB - 26);
    let mut body = header.into_bytes();
    assert_eq!(body.len(), 24);
    body.resize(MIB - 2, b'z');
    let body = std::sync::Arc::new(body);
    let mut peak = idle;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        let addr = addr.clone();
        let body = body.clone();
        tasks.spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else {
                return None;
            };
            for chunk in body.chunks(64 * 1024) {
                if s.write_all(chunk).await.is_err() {
                    return None;
                }
            }
            Some(s)
        });
        if tasks.len() % 50 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(r)) => held.extend(r.unwrap()),
            Ok(None) => break,
            Err(_) => panic!("clients still writing after 60 s ({} left)", tasks.len()),
        }
        peak = peak.max(rss_kib(pid));
    }
    // Let the server read whatever the kernel still holds for it.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    let grown_mib = peak.saturating_sub(idle) / 1024;
    eprintln!(
        "idle RSS {} MiB, peak {} MiB, growth {grown_mib} MiB; {} of {CONNS} connections accepted the whole MiB",
        idle / 1024,
        peak / 1024,
        held.len()
    );
    assert!(grown_mib <= 256, "RSS grew by {grown_mib} MiB");
    // A fresh client is answered within 1 s.
    let start = Instant::now();
    let mut cl = RespClient::connect(&addr).await;
    cl.timeout = Duration::from_secs(1);
    cl.send(&["PING"]).await;
    let reply = cl.try_read().await;
    assert_eq!(
        reply.and_then(|r| r.1.text()).as_deref(),
        Some("PONG"),
        "a fresh client was not answered within 1 s"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    drop(held);
}
