//! The Sentinel port under misbehaving clients, against the real binary: slow and half-sent
//! requests are cut off at their limits, the buffered bytes of all connections stay within
//! the global budget, and a fresh client is still answered.

mod support;

use std::collections::BTreeMap;
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
    // A new cluster commits its command format just after the election, and every node
    // publishes it as `+cluster-version`, an event that matches the slow subscriber's
    // patterns. Waiting for it here keeps it out of what the tests subscribe to.
    support::eventually(
        Duration::from_secs(10),
        "the cluster version is committed",
        || async {
            (n.status().await?.cluster_version == raft_sentinel::fsm::SUPPORTED_VERSION)
                .then_some(())
        },
    )
    .await;
    support::eventually(Duration::from_secs(10), "sentinel port answers", || async {
        let mut cl = RespClient::connect(&n.sentinel_addr()).await;
        cl.send(&["PING"]).await;
        cl.try_read().await
    })
    .await;
    n
}

/// The `limit_*` counters of `INFO stats`, by limit name.
async fn limit_counts(addr: &str, pass: Option<&str>) -> BTreeMap<String, u64> {
    let mut cl = RespClient::connect(addr).await;
    if let Some(p) = pass {
        assert_eq!(cl.cmd(&["AUTH", p]).await.text().as_deref(), Some("OK"));
    }
    let info = cl.cmd(&["INFO", "stats"]).await.text().expect("INFO text");
    info.lines()
        .filter_map(|l| l.strip_prefix("limit_")?.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.parse().expect("a count")))
        .collect()
}

/// The metrics port's `/metrics` page.
fn scrape(metrics_port: u16) -> String {
    support::http_get_raw(metrics_port, "/metrics").expect("metrics port")
}

/// `raft_sentinel_port_limited_connections_total` by limit, from the metrics port.
fn scraped_limits(metrics_port: u16) -> BTreeMap<String, u64> {
    let body = scrape(metrics_port);
    let prefix = "raft_sentinel_port_limited_connections_total{";
    body.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| {
            let (labels, v) = l.split_once("} ")?;
            let limit = labels.split("limit=\"").nth(1)?.split('"').next()?;
            Some((limit.to_string(), v.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
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
    // Counted under its limit, and under no other.
    let counts = limit_counts(&n.sentinel_addr(), None).await;
    assert_eq!(counts.len(), 10, "{counts:?}");
    for (limit, n) in &counts {
        let want = u64::from(limit == "request_timeout");
        assert_eq!(*n, want, "limit_{limit} in INFO stats: {counts:?}");
    }
    assert_eq!(scraped_limits(n.metrics_port), counts);
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
    let counts = limit_counts(&n.sentinel_addr(), Some("s3cret")).await;
    assert_eq!(counts["unauth_idle_timeout"], 1, "{counts:?}");
    assert_eq!(counts["request_too_large"], 1, "{counts:?}");
    let info = cl.cmd(&["INFO", "stats"]).await.text().unwrap();
    assert!(
        info.contains("client_query_buffer_limit_disconnections:1\r\n"),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_and_idle_timeout_refuse_and_close_and_are_counted() {
    let c = one_node("[sentinel_port]\nmax_connections = 2\nidle_timeout_secs = 1\n");
    let n = ready(&c).await;
    let addr = n.sentinel_addr();
    // A client that sends nothing is closed after the idle timeout.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let d = closed_within(&mut s, Duration::from_secs(6))
        .await
        .expect("an idle client stays connected past idle_timeout");
    assert!(d >= Duration::from_millis(900), "closed after {d:?}");
    // Two subscribers (never idle-closed) take both slots, once every earlier connection
    // has given its slot back; a third client is refused.
    let no_connections = || async {
        scrape(n.metrics_port)
            .contains("raft_sentinel_port_connections{port=\"sentinel\"} 0\n")
            .then_some(())
    };
    support::eventually(Duration::from_secs(10), "no connections", no_connections).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut cl = RespClient::connect(&addr).await;
        let v = cl.cmd(&["SUBSCRIBE", "+switch-master"]).await;
        assert_eq!(v.items().len(), 3, "{v:?}");
        held.push(cl);
    }
    let mut third = RespClient::connect(&addr).await;
    let (raw, _) = third.read().await;
    assert_eq!(raw, b"-ERR max number of clients reached\r\n");
    assert!(third.closed_within(Duration::from_secs(5)).await);
    let scraped = scraped_limits(n.metrics_port);
    assert_eq!(scraped["max_connections"], 1, "{scraped:?}");
    assert_eq!(scraped["idle_timeout"], 1, "{scraped:?}");
    drop(held);
    support::eventually(Duration::from_secs(10), "the slots free", no_connections).await;
    let counts = limit_counts(&addr, None).await;
    assert_eq!(counts["max_connections"], 1, "{counts:?}");
    assert_eq!(counts["idle_timeout"], 1, "{counts:?}");
}

/// Like Sentinel's (Redis's) `client-output-buffer-limit pubsub`: a subscriber that stops
/// reading while events keep coming is disconnected once its pending output passes the hard
/// limit; a subscriber that reads keeps its connection and gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_closed_at_its_pubsub_output_limit() {
    const PATTERNS: usize = 10_000;
    let c = one_node(
        "[sentinel_port]\npubsub_hard_limit_bytes = 1048576\npubsub_soft_limit_bytes = 262144\n",
    );
    let n = ready(&c).await;
    let addr = n.sentinel_addr();
    // A live master: an unreachable one would be +sdown after down_after, an event that
    // matches every slow-subscriber pattern and, arriving while the slow subscriber is still
    // taking its 10,000 confirmations through a 4 KiB window, would close it too early.
    let master = support::RedisProcess::start(&[]);
    let master_port = master.port.to_string();
    // A subscriber that reads. It sees +monitor before the slow one subscribes: that event
    // would otherwise reach the slow one too (10,000 pmessages right after its confirmations)
    // whenever it is published a little after the command's reply.
    let mut reader = RespClient::connect(&addr).await;
    reader.send(&["SUBSCRIBE", "+monitor", "+set"]).await;
    reader.read().await;
    reader.read().await;
    let mut admin = RespClient::connect(&addr).await;
    assert_eq!(
        admin
            .cmd(&["SENTINEL", "MONITOR", "m", "127.0.0.1", &master_port, "1"])
            .await
            .text()
            .as_deref(),
        Some("OK")
    );
    let ev = reader.read().await.1.items();
    assert_eq!(
        ev.get(1).and_then(|c| c.text()).as_deref(),
        Some("+monitor")
    );
    // The slow subscriber: a small receive window, and patterns that all match `+set`, so
    // each event is about 1 MB of pmessages for it.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock.connect(addr.parse().unwrap()).await.unwrap();
    let mut req = vec!["PSUBSCRIBE".to_string()];
    req.extend((0..PATTERNS).map(|i| format!("[+{i}]*")));
    let req: Vec<&str> = req.iter().map(String::as_str).collect();
    slow.write_all(&support::resp::encode(&req)).await.unwrap();
    let last = format!(":{PATTERNS}\r\n");
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while !got.ends_with(last.as_bytes()) {
        let r = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut chunk)).await;
        let k = r.expect("PSUBSCRIBE confirmations").unwrap();
        assert!(
            k > 0,
            "closed while confirming PSUBSCRIBE ({} bytes): {}",
            got.len(),
            n.log_tail(20)
        );
        got.extend_from_slice(&chunk[..k]);
    }
    // From here on it reads nothing.
    let mut closed_after = None;
    for i in 0..40 {
        let v = (5000 + i).to_string();
        let r = admin
            .cmd(&["SENTINEL", "SET", "m", "down-after-milliseconds", &v])
            .await;
        assert_eq!(r.text().as_deref(), Some("OK"));
        let ev = reader.read().await.1.items();
        assert!(
            ev.last()
                .and_then(|p| p.text())
                .is_some_and(|p| p.contains(&v)),
            "the reading subscriber missed +set {v}: {ev:?}"
        );
        if limit_counts(&addr, None).await["pubsub_output"] == 1 {
            closed_after = Some(i + 1);
            break;
        }
    }
    // The slow subscriber's task may still be queueing the events already published
    // (each is 10,000 pmessages to encode); 40 events are ~40 MB, far over the limit.
    if closed_after.is_none() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if limit_counts(&addr, None).await["pubsub_output"] == 1 {
                closed_after = Some(40);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let Some(events) = closed_after else {
        panic!(
            "a subscriber that reads nothing was never disconnected: {:?}\n{}",
            limit_counts(&addr, None).await,
            n.log_tail(20)
        );
    };
    eprintln!("slow subscriber disconnected after at most {events} events of ~1 MB");
    // It sees the end of its stream once it reads what the kernel still held for it.
    let mut drained = 0usize;
    let eof = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(k) => drained += k,
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "still open after reading {drained} bytes");
    // The reading subscriber still has its connection; the counters agree.
    assert_eq!(reader.cmd(&["PING"]).await.items().len(), 2);
    let counts = limit_counts(&addr, None).await;
    assert_eq!(counts["pubsub_output"], 1, "{counts:?}");
    assert_eq!(counts["pubsub_lag"], 0, "{counts:?}");
    assert_eq!(scraped_limits(n.metrics_port)["pubsub_output"], 1);
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
    // The budget closed the largest buffers (and may have refused connections meanwhile).
    let scraped = scraped_limits(n.metrics_port);
    eprintln!("limits hit: {scraped:?}");
    assert!(scraped["buffer_budget"] >= 1, "{scraped:?}");
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
