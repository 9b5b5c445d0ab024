//! The metrics port: /metrics parses as Prometheus text and moves with a failover; /health
//! and /ready answer as an orchestrator expects.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use support::{eventually, Cluster, ClusterOpts, NodeProcess, RedisProcess};

/// Minimal HTTP/1.0 GET: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Parses the text exposition strictly enough to catch malformed output: every sample line is
/// `name{labels} value` with a valid metric name, balanced quoted labels and a float value;
/// every sample belongs to a family announced by `# TYPE`. Returns samples by name+labels.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut families = Vec::new();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics output must end with # EOF"
    );
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            families.push(it.next().unwrap().to_string());
            let kind = it.next().unwrap();
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "info",
                    "stateset"
                ]
                .contains(&kind),
                "{line}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels: {line}"
                );
                assert_eq!(
                    labels.matches('"').count() % 2,
                    0,
                    "unbalanced quotes: {line}"
                );
            }
        }
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "sample without a # TYPE family: {line}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

fn scrape(n: &NodeProcess) -> BTreeMap<String, f64> {
    let (code, body) = http_get(n.metrics_port, "/metrics").expect("scrape");
    assert_eq!(code, 200);
    parse_exposition(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_a_failover_and_ready_follows_leader_contact() {
    let m = RedisProcess::start(&["--requirepass", "metrics-secret-pw"]);
    let r1 = RedisProcess::start_replica(
        &m,
        &[
            "--masterauth",
            "metrics-secret-pw",
            "--requirepass",
            "metrics-secret-pw",
        ],
    );
    let mut c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = 500\nfailover_timeout_ms = 5000\nauth_pass = \"metrics-secret-pw\"\n",
            m.addr()
        ),
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    for n in &c.nodes {
        eventually(Duration::from_secs(10), "health and readiness", || async {
            let (h, _) = http_get(n.metrics_port, "/health")?;
            let (r, _) = http_get(n.metrics_port, "/ready")?;
            (h == 200 && r == 200).then_some(())
        })
        .await;
    }
    let before = eventually(
        Duration::from_secs(20),
        "replica known and master reachable",
        || async {
            let s = scrape(&c.nodes[0]);
            (s.get("raft_sentinel_master_replicas{master=\"mymaster\"}") == Some(&1.0)
                && s.get("raft_sentinel_master_reachable{master=\"mymaster\"}") == Some(&1.0))
            .then_some(s)
        },
    )
    .await;
    assert_eq!(
        before["raft_sentinel_master_config_epoch{master=\"mymaster\"}"],
        0.0
    );
    assert_eq!(before["raft_sentinel_raft_voters"], 3.0);
    assert!(before.keys().all(|k| !k.contains("metrics-secret-pw")));

    // Fail over: kill the master.
    let mut m = m;
    m.kill9();
    let after = eventually(
        Duration::from_secs(30),
        "epoch and failover counter moved",
        || async {
            let s = scrape(&c.nodes[1]);
            let epoch = *s.get("raft_sentinel_master_config_epoch{master=\"mymaster\"}")?;
            let failovers = *s.get("raft_sentinel_failovers_total{master=\"mymaster\"}")?;
            (epoch >= 1.0 && failovers >= 1.0).then_some(s)
        },
    )
    .await;
    assert!(after["raft_sentinel_current_epoch"] >= 1.0);
    assert!(after.contains_key(
        "raft_sentinel_master_last_failover_seconds{master=\"mymaster\",phase=\"promotion\"}"
    ));
    assert!(after["raft_sentinel_odown_events_total{master=\"mymaster\"}"] >= 1.0);
    let (_, raw) = http_get(c.nodes[2].metrics_port, "/metrics").unwrap();
    assert!(
        !raw.contains("metrics-secret-pw"),
        "a password leaked into metrics"
    );

    // A node that loses its leader stops being ready (but stays healthy).
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let lone = c.nodes.iter().find(|n| n.id != leader).unwrap().id;
    for id in [1, 2, 3] {
        if id != lone {
            c.node_mut(id).kill9();
        }
    }
    let n = c.node(lone);
    eventually(Duration::from_secs(10), "lone node not ready", || async {
        let (r, body) = http_get(n.metrics_port, "/ready")?;
        (r == 503 && body.contains("no contact")).then_some(())
    })
    .await;
    assert_eq!(http_get(n.metrics_port, "/health").unwrap().0, 200);
    assert_eq!(scrape(n)["raft_sentinel_raft_leader_contact"], 0.0);
    drop(r1);
}
