//! The metrics port: /metrics parses as Prometheus text and moves with a failover; /health
//! and /ready answer as an orchestrator expects.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::{eventually, http_get, Cluster, ClusterOpts, MasterToml, NodeProcess, RedisProcess};

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

/// Runs the shipped alert rules with promtool over two real scrapes of one node, `before`
/// for 3 minutes and then `after`, and says whether `alert` fires at 5m with `labels`.
fn promtool_fires(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    alert: &str,
    labels: &str,
) -> bool {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("rs-promtool-{}-{alert}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut series = String::new();
    for k in keys {
        let value = |m: &BTreeMap<String, f64>| m.get(k).map_or("_".to_string(), |v| v.to_string());
        let (b, a) = (value(before), value(after));
        let key = match k.split_once('{') {
            Some((name, rest)) => format!("{name}{{job=\"raft-sentinel\",instance=\"n1\",{rest}"),
            None => format!("{k}{{job=\"raft-sentinel\",instance=\"n1\"}}"),
        };
        series.push_str(&format!(
            "      - series: '{key}'\n        values: '{b} {b} {b} {a} {a} {a} {a} {a}'\n"
        ));
    }
    let test = format!(
        "rule_files: ['{root}/deploy/monitoring/alerts.yaml']\nevaluation_interval: 15s\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n      - eval_time: 5m\n        alertname: {alert}\n        exp_alerts:\n          - exp_labels: {labels}\n            exp_annotations: {{summary: \"Master mymaster was failed over\"}}\n"
    );
    let file = dir.join("test.yaml");
    std::fs::write(&file, test).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus) is needed: scripts/test.sh installs it");
    std::fs::remove_dir_all(&dir).ok();
    out.status.success()
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
    let mut c = Cluster::start(ClusterOpts::watching(
        MasterToml::new("mymaster", m.addr(), 2)
            .set("down_after_ms", 500)
            .set("failover_timeout_ms", 5000)
            .text("auth_pass", "metrics-secret-pw"),
    ));
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
    let before_1 = scrape(&c.nodes[1]);
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
    // The shipped rules, fed with these real scrapes, alert on this first failover (and do
    // not without it).
    let failover = "{master: mymaster, severity: info}";
    assert!(promtool_fires(
        &before_1,
        &after,
        "RaftSentinelFailover",
        failover
    ));
    assert!(!promtool_fires(
        &before_1,
        &before_1,
        "RaftSentinelFailover",
        failover
    ));
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

/// Sample names of a scrape (without labels).
fn names(samples: &BTreeMap<String, f64>) -> BTreeSet<String> {
    samples
        .keys()
        .map(|k| k.split('{').next().unwrap().to_string())
        .collect()
}

fn sentinel(n: &NodeProcess) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}/", n.sentinel_port))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

/// A fresh node with one monitored master, before anything happened: every metric the alert
/// rules and the dashboard query is in its scrape, per-master counters at 0 (so the first
/// failover is an increase), per-port series from startup. A master monitored later gets its
/// series at 0 too, a removed one loses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_exports_every_metric_the_rules_and_dashboard_use() {
    let m = RedisProcess::start(&[]);
    let c = Cluster::start(ClusterOpts {
        nodes: 1,
        ..ClusterOpts::watching(MasterToml::new("mymaster", m.addr(), 1).set("down_after_ms", 5000))
    });
    let n = &c.nodes[0];
    // Ready: in contact with the leader, so the Sentinel port answers lookups below.
    let s = eventually(
        Duration::from_secs(20),
        "ready, master monitored",
        || async {
            if http_get(n.metrics_port, "/ready")?.0 != 200 {
                return None;
            }
            let (code, body) = http_get(n.metrics_port, "/metrics")?;
            let s = parse_exposition(&body);
            (code == 200
                && s.contains_key("raft_sentinel_master_config_epoch{master=\"mymaster\"}"))
            .then_some(s)
        },
    )
    .await;

    let root = env!("CARGO_MANIFEST_DIR");
    let mut used = BTreeSet::new();
    for f in [
        "deploy/monitoring/alerts.yaml",
        "deploy/monitoring/grafana-dashboard.json",
    ] {
        used.extend(support::referenced_metrics(
            &std::fs::read_to_string(format!("{root}/{f}")).unwrap(),
        ));
    }
    assert!(used.len() >= 15, "found too few metric names: {used:?}");
    let exported = names(&s);
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "a fresh node's scrape lacks metrics that the rules or the dashboard use: {missing:?}"
    );

    // The series whose first change the alerts and graphs must see, present and at 0.
    for series in [
        "raft_sentinel_failovers_total{master=\"mymaster\"}",
        "raft_sentinel_odown_events_total{master=\"mymaster\"}",
        "raft_sentinel_failover_aborts_total{master=\"mymaster\",reason=\"no-good-slave\"}",
        "raft_sentinel_failover_aborts_total{master=\"mymaster\",reason=\"slave-timeout\"}",
        "raft_sentinel_failover_aborts_total{master=\"mymaster\",reason=\"not-elected\"}",
        "raft_sentinel_failover_aborts_total{master=\"mymaster\",reason=\"other\"}",
        "raft_sentinel_master_last_abort_timestamp_seconds{master=\"mymaster\",reason=\"no-good-slave\"}",
        "raft_sentinel_master_last_failover_seconds{master=\"mymaster\",phase=\"promotion\"}",
        "raft_sentinel_master_last_failover_seconds{master=\"mymaster\",phase=\"total\"}",
        "raft_sentinel_master_down_observed{master=\"mymaster\",node=\"1\"}",
        "raft_sentinel_master_odown{master=\"mymaster\"}",
        "raft_sentinel_master_failover_in_progress{master=\"mymaster\"}",
        "raft_sentinel_proposals_total{result=\"timeout\"}",
        "raft_sentinel_port_errors_total{port=\"sentinel\"}",
        "raft_sentinel_port_rejected_connections_total{port=\"sentinel\"}",
        "raft_sentinel_port_commands_total{port=\"sentinel\",command=\"sentinel|failover\"}",
        "raft_sentinel_port_commands_total{port=\"grpc\",command=\"raftsentinel.v1.Coordinator/Failover\"}",
        "raft_sentinel_port_commands_total{port=\"grpc\",command=\"other\"}",
        "raft_sentinel_port_errors_total{port=\"grpc\"}",
    ] {
        assert_eq!(s.get(series), Some(&0.0), "{series}");
    }

    // Port counters move with traffic.
    let mut conn = sentinel(n);
    let _: String = redis::cmd("PING").query(&mut conn).unwrap();
    let _: redis::RedisResult<String> = redis::cmd("NOSUCHCOMMAND").query(&mut conn);
    let _: Vec<String> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg("mymaster")
        .query(&mut conn)
        .unwrap();
    let s = scrape(n);
    assert!(s["raft_sentinel_port_connections{port=\"sentinel\"}"] >= 1.0);
    assert!(s["raft_sentinel_port_commands_total{port=\"sentinel\",command=\"ping\"}"] >= 1.0);
    assert!(
        s["raft_sentinel_port_commands_total{port=\"sentinel\",command=\"sentinel|get-master-addr-by-name\"}"]
            >= 1.0
    );
    assert!(s["raft_sentinel_port_commands_total{port=\"sentinel\",command=\"other\"}"] >= 1.0);
    assert!(s["raft_sentinel_port_errors_total{port=\"sentinel\"}"] >= 1.0);

    // The gRPC port: a successful call and one that fails.
    let mut api = n.client().await.unwrap();
    let get = |name: &str| pb::GetMasterRequest {
        name: name.into(),
        consistency: pb::Consistency::Local.into(),
    };
    api.get_master(get("mymaster")).await.unwrap();
    assert!(api.get_master(get("no-such-master")).await.is_err());
    let s = scrape(n);
    assert!(s["raft_sentinel_port_connections{port=\"grpc\"}"] >= 1.0);
    assert_eq!(
        s["raft_sentinel_port_commands_total{port=\"grpc\",command=\"raftsentinel.v1.Coordinator/GetMaster\"}"],
        2.0
    );
    assert_eq!(s["raft_sentinel_port_errors_total{port=\"grpc\"}"], 1.0);
    let open = s["raft_sentinel_port_connections{port=\"grpc\"}"];
    drop(api);
    eventually(
        Duration::from_secs(10),
        "gRPC connection counted closed",
        || async {
            (scrape(n)["raft_sentinel_port_connections{port=\"grpc\"}"] < open).then_some(())
        },
    )
    .await;

    // A master monitored later has its series at 0 at once; a removed one loses them.
    let other = RedisProcess::start(&[]);
    let (host, port) = other
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let _: String = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg("second")
        .arg(&host)
        .arg(&port)
        .arg(1)
        .query(&mut conn)
        .unwrap();
    let _: String = redis::cmd("SENTINEL")
        .arg("REMOVE")
        .arg("mymaster")
        .query(&mut conn)
        .unwrap();
    let s = scrape(n);
    assert_eq!(
        s.get("raft_sentinel_failovers_total{master=\"second\"}"),
        Some(&0.0)
    );
    assert_eq!(
        s.get("raft_sentinel_failover_aborts_total{master=\"second\",reason=\"no-good-slave\"}"),
        Some(&0.0)
    );
    // MONITOR and REMOVE went through the log.
    assert!(s["raft_sentinel_proposals_total{result=\"applied\"}"] >= 2.0);
    assert!(s["raft_sentinel_proposal_duration_seconds_count"] >= 2.0);
    let left: Vec<_> = s.keys().filter(|k| k.contains("\"mymaster\"")).collect();
    assert!(
        left.is_empty(),
        "series of a removed master remain: {left:?}"
    );

    // A master without replicas that goes down: its failover is aborted (no-good-slave), which
    // the abort counter and the history-based timestamp the alert reads both show.
    let _: String = redis::cmd("SENTINEL")
        .arg("SET")
        .arg("second")
        .arg("down-after-milliseconds")
        .arg(300)
        .query(&mut conn)
        .unwrap();
    let mut other = other;
    other.kill9();
    let s = eventually(Duration::from_secs(20), "failover aborted", || async {
        let s = scrape(n);
        (*s.get("raft_sentinel_master_last_abort_timestamp_seconds{master=\"second\",reason=\"no-good-slave\"}")? > 0.0)
            .then_some(s)
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at = s["raft_sentinel_master_last_abort_timestamp_seconds{master=\"second\",reason=\"no-good-slave\"}"];
    assert!(
        (now - at).abs() < 60.0,
        "abort time {at} is not now ({now})"
    );
    assert!(
        s["raft_sentinel_failover_aborts_total{master=\"second\",reason=\"no-good-slave\"}"] >= 1.0
    );
    assert_eq!(
        s["raft_sentinel_master_last_abort_timestamp_seconds{master=\"second\",reason=\"slave-timeout\"}"],
        0.0
    );
    drop(m);
}
