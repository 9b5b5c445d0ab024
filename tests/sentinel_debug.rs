//! Node-local settings change what the node does, not only what it lists. `SENTINEL DEBUG`:
//! the PING and INFO rates a real `redis-server` counts in its `INFO commandstats`, TILT's
//! trigger and period after a real SIGSTOP of the node, and how often a down vote is
//! re-affirmed in the log. `SENTINEL CONFIG SET announce-ip/announce-port`: the address the
//! other nodes list. Replies and errors byte for byte as a real `redis-sentinel` sends them.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use raft_sentinel::pb::api as pb;
use support::real_sentinel::RealSentinel;
use support::resp::RespClient;
use support::{eventually, Cluster, ClusterOpts, RedisProcess};

/// One node monitoring `master` with this `down_after_ms`.
async fn one_node(master: &RedisProcess, down_after_ms: u64) -> Cluster {
    let opts = ClusterOpts {
        nodes: 1,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 1\ndown_after_ms = {down_after_ms}\nfailover_timeout_ms = 60000\n",
            master.addr()
        ),
        ..ClusterOpts::default()
    };
    let c = Cluster::start(opts);
    c.wait_leader(Duration::from_secs(30)).await;
    let addr = c.nodes[0].sentinel_addr();
    eventually(Duration::from_secs(30), "the node serves mymaster", || {
        let addr = addr.clone();
        async move {
            tokio::net::TcpStream::connect(&addr).await.ok()?;
            let mut s = RespClient::connect(&addr).await;
            s.send(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
                .await;
            let items = s.try_read().await?.1.items();
            (items.len() == 2).then_some(())
        }
    })
    .await;
    c
}

/// `calls` of `cmdstat_<cmd>` in the instance's `INFO commandstats`.
fn calls(r: &RedisProcess, cmd: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut r.client())
        .unwrap();
    let prefix = format!("cmdstat_{cmd}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// PINGs and ROLEs (one per INFO refresh) the instance receives during `window`, and the
/// window they were really counted over: a loaded machine may run this test late, so the
/// counts can cover more than `window`.
async fn rates(r: &RedisProcess, window: Duration) -> (u64, u64, Duration) {
    let start = Instant::now();
    let (p0, r0) = (calls(r, "ping"), calls(r, "role"));
    tokio::time::sleep(window).await;
    let (p1, r1) = (calls(r, "ping"), calls(r, "role"));
    (p1 - p0, r1 - r0, start.elapsed())
}

/// At most `per_sec` calls a second over `window`, and two more (the calls at either edge).
fn at_most(per_sec: u64, window: Duration) -> u64 {
    (per_sec as f64 * window.as_secs_f64()).round() as u64 + 2
}

fn ok(v: &support::resp::Value) {
    assert_eq!(v.text().as_deref(), Some("OK"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_info_periods_change_how_often_redis_is_probed() {
    let master = RedisProcess::start(&[]);
    // down_after 5 s: by default a PING every second (a third of down_after, at most
    // PING-PERIOD) and INFO every second; an INFO reply stands for the PING due with it.
    let c = one_node(&master, 5000).await;
    let mut s = RespClient::connect(&c.nodes[0].sentinel_addr()).await;
    let v = s.cmd(&["SENTINEL", "DEBUG"]).await;
    assert_eq!(v.field("PING-PERIOD").as_deref(), Some("1000"));
    assert_eq!(v.field("INFO-PERIOD").as_deref(), Some("1000"));
    let window = Duration::from_secs(3);
    // Scheduling delays of the node only make fewer calls, so the defaults give an upper
    // bound, over the window the calls were really counted in.
    let (pings, roles, took) = rates(&master, window).await;
    eprintln!("defaults: {pings} PINGs, {roles} INFO refreshes in {took:?}");
    assert!(
        pings <= at_most(2, took) && roles <= at_most(1, took),
        "defaults: {pings} PINGs, {roles} INFO refreshes in {took:?}"
    );

    ok(&s
        .cmd(&[
            "SENTINEL",
            "DEBUG",
            "ping-period",
            "50",
            "INFO-PERIOD",
            "150",
        ])
        .await);
    let v = s.cmd(&["SENTINEL", "DEBUG"]).await;
    assert_eq!(v.field("PING-PERIOD").as_deref(), Some("50"));
    assert_eq!(v.field("INFO-PERIOD").as_deref(), Some("150"));
    let (pings, roles, took) = rates(&master, window).await;
    eprintln!("PING-PERIOD 50, INFO-PERIOD 150: {pings} PINGs, {roles} INFO refreshes in {took:?}");
    // 20 INFO rounds and about 40 PINGs expected (an INFO round stands for the PING due with
    // it); well under that would mean the settings did nothing.
    assert!(
        pings >= 25 && roles >= 10,
        "PING-PERIOD 50, INFO-PERIOD 150: {pings} PINGs, {roles} INFO refreshes in {took:?}"
    );

    // Longer than the default INFO period: refreshes nearly stop.
    ok(&s
        .cmd(&[
            "SENTINEL",
            "DEBUG",
            "info-period",
            "10000",
            "ping-period",
            "1000",
        ])
        .await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (pings, roles, took) = rates(&master, window).await;
    eprintln!("INFO-PERIOD 10000: {pings} PINGs, {roles} INFO refreshes in {took:?}");
    assert!(
        pings <= at_most(2, took) && roles <= 1,
        "INFO-PERIOD 10000: {pings} PINGs, {roles} INFO refreshes in {took:?}"
    );
}

/// `run_id` of the instance's `INFO server`.
fn run_id(r: &RedisProcess) -> String {
    let text: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut r.client())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .expect("run_id in INFO server")
        .trim()
        .to_string()
}

/// The probe keeps a read pending on its idle connection: a master killed right after a
/// PING is known to be gone at once, reconnected to every 10 ms, and its restart (a new run
/// id, possibly an empty dataset) is seen within a few reconnect periods, not at the next
/// PING (here a second away, with INFO every 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_between_two_pings_is_seen_at_once() {
    let mut master = RedisProcess::start(&[]);
    let c = one_node(&master, 10_000).await;
    let mut s = RespClient::connect(&c.nodes[0].sentinel_addr()).await;
    ok(&s.cmd(&["SENTINEL", "DEBUG", "INFO-PERIOD", "10000"]).await);
    let old = run_id(&master);
    eventually(Duration::from_secs(10), "the node lists the run id", || {
        let addr = c.nodes[0].sentinel_addr();
        let old = old.clone();
        async move {
            let mut s = RespClient::connect(&addr).await;
            let v = s.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
            (v.field("runid") == Some(old)).then_some(())
        }
    })
    .await;
    // Kill it right after a PING: the next one is a PING period (1 s) away.
    let p0 = calls(&master, "ping");
    let t = Instant::now();
    while calls(&master, "ping") == p0 {
        assert!(t.elapsed() < Duration::from_secs(5), "no PING in 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    master.restart();
    let back = Instant::now();
    let new = run_id(&master);
    assert_ne!(new, old);
    let seen = loop {
        let v = s.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
        if v.field("runid").as_deref() == Some(new.as_str()) {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "the restart was not seen in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("restart seen {seen:?} after the master was back");
    // Reconnects every 10 ms, then one INFO round: well under the PING period.
    assert!(
        seen < Duration::from_millis(400),
        "restart seen only after {seen:?}"
    );
}

/// `sentinel_tilt` of the node's `INFO sentinel`, or None while it does not answer.
async fn tilt(addr: &str) -> Option<bool> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut s = RespClient::connect(addr).await;
    s.send(&["INFO", "sentinel"]).await;
    let text = s.try_read().await?.1.text()?;
    let line = text.lines().find(|l| l.starts_with("sentinel_tilt:"))?;
    Some(line.ends_with(":1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilt_trigger_and_period_follow_the_settings() {
    let master = RedisProcess::start(&[]);
    let c = one_node(&master, 5000).await;
    let node = &c.nodes[0];
    let addr = node.sentinel_addr();
    let mut s = RespClient::connect(&addr).await;
    // A start slowed by a loaded machine may itself have been a stall.
    eventually(Duration::from_secs(15), "no TILT before the test", || {
        let addr = addr.clone();
        async move { tilt(&addr).await.filter(|t| !*t) }
    })
    .await;

    // A 1.5 s stop is over the default 1 s trigger; the TILT lasts 3 s instead of 10 s.
    ok(&s.cmd(&["SENTINEL", "DEBUG", "TILT-PERIOD", "3000"]).await);
    node.pause();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.resume();
    let resumed = Instant::now();
    eventually(Duration::from_secs(3), "TILT after the stop", || {
        let addr = addr.clone();
        async move { tilt(&addr).await.filter(|t| *t) }
    })
    .await;
    eventually(Duration::from_secs(12), "TILT ends", || {
        let addr = addr.clone();
        async move { tilt(&addr).await.filter(|t| !*t) }
    })
    .await;
    let took = resumed.elapsed();
    eprintln!("TILT-PERIOD 3000: TILT over {took:?} after the stop");
    assert!(
        took < Duration::from_secs(8),
        "TILT-PERIOD 3000 but TILT lasted {took:?} after the stop (default 10 s)"
    );

    // A 10 s trigger: the same kind of stop is no stall worth a TILT.
    let mut s2 = RespClient::connect(&addr).await;
    ok(&s2
        .cmd(&["SENTINEL", "DEBUG", "tilt-trigger", "10000"])
        .await);
    drop(s);
    node.pause();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    node.resume();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_ne!(
            tilt(&addr).await,
            Some(true),
            "TILT-TRIGGER 10000, yet a 2 s stop entered TILT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads Pub/Sub messages until one on `channel` and returns its exact bytes; a `PSUBSCRIBE *`
/// also gets the node's other events, which are skipped (and shown, should the wait fail).
async fn next_on(s: &mut RespClient, channel: &str) -> Vec<u8> {
    loop {
        let (raw, v) = s.read().await;
        let items = v.items();
        let ch = match items.first().and_then(|k| k.text()).as_deref() {
            Some("pmessage") => items.get(2).and_then(|c| c.text()),
            Some("message") => items.get(1).and_then(|c| c.text()),
            _ => None,
        };
        if ch.as_deref() == Some(channel) {
            return raw;
        }
        eprintln!(
            "skipped while waiting for {channel}: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

/// redis-py (`tests/compat/tilt_pubsub.py`) subscribed to the node's port, killed if the test
/// ends before it does.
struct PySubscriber {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PySubscriber {
    fn start(addr: &str, seconds: u64) -> PySubscriber {
        use std::io::BufRead;
        let compat = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
        let python = compat.join(".venv/bin/python");
        assert!(
            python.exists(),
            "redis-py is not installed: python3 -m venv tests/compat/.venv && tests/compat/.venv/bin/pip install -r tests/compat/requirements.txt"
        );
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut child = std::process::Command::new(python)
            .arg(compat.join("tilt_pubsub.py"))
            .args([host, port, &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start python");
        // stderr too, so that a traceback shows in the assertion that fails.
        let (tx, lines) = std::sync::mpsc::channel();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for (stream, prefix) in [(out, ""), (err, "stderr: ")] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send(format!("{prefix}{l}")).is_err() {
                        break;
                    }
                }
            });
        }
        PySubscriber { child, lines }
    }

    /// Waits (up to `limit`) until it says it is subscribed; what it printed otherwise.
    fn ready(&self, limit: Duration) -> Result<(), Vec<String>> {
        let until = Instant::now() + limit;
        let mut other = Vec::new();
        tokio::task::block_in_place(|| loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "ready" => return Ok(()),
                Ok(l) => other.push(l),
                Err(_) => return Err(other),
            }
        })
    }

    /// The rest of what it prints, and whether it exited with success.
    fn finish(&mut self) -> (Vec<String>, bool) {
        tokio::task::block_in_place(|| {
            let lines: Vec<String> = self.lines.iter().collect();
            (lines, self.child.wait().expect("wait").success())
        })
    }
}

impl Drop for PySubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `raft_sentinel_tilt_entered_total` on the node's metrics port.
fn tilts_entered(n: &support::NodeProcess) -> Option<u64> {
    let (_, body) = support::http_get(n.metrics_port, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix("raft_sentinel_tilt_entered_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilt_is_published_on_the_port_pubsub() {
    let master = RedisProcess::start(&[]);
    let c = one_node(&master, 5000).await;
    let node = &c.nodes[0];
    let addr = node.sentinel_addr();
    eventually(Duration::from_secs(15), "no TILT before the test", || {
        let addr = addr.clone();
        async move { tilt(&addr).await.filter(|t| !*t) }
    })
    .await;
    let before = tilts_entered(node);
    // Sentinel's 2 s trigger, so that only the 3 s stop below is a stall even on a loaded
    // machine; a 2 s TILT keeps the test short.
    let mut s = RespClient::connect(&addr).await;
    ok(&s.cmd(&["SENTINEL", "DEBUG", "TILT-TRIGGER", "2000"]).await);
    ok(&s.cmd(&["SENTINEL", "DEBUG", "TILT-PERIOD", "2000"]).await);

    // Every event, in RESP2 (what Lettuce and operators' tooling do) ...
    let mut all = RespClient::connect(&addr).await;
    assert_eq!(
        String::from_utf8_lossy(&all.raw(&["PSUBSCRIBE", "*"]).await),
        "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
    );
    // ... and the two channels by name, as RESP3 push frames.
    let mut named = RespClient::connect(&addr).await;
    named.send(&["HELLO", "3"]).await;
    named.read().await;
    named.send(&["SUBSCRIBE", "+tilt", "-tilt"]).await;
    for (ch, n) in [("+tilt", 1), ("-tilt", 2)] {
        assert_eq!(
            String::from_utf8_lossy(&named.read().await.0),
            format!(">3\r\n$9\r\nsubscribe\r\n$5\r\n{ch}\r\n:{n}\r\n")
        );
    }

    // ... and redis-py's pubsub, the same two ways.
    let mut py = PySubscriber::start(&addr, 30);
    if let Err(printed) = py.ready(Duration::from_secs(20)) {
        panic!("redis-py did not subscribe: {printed:?}");
    }

    node.pause();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    node.resume();
    // Sentinel's bytes: no instance details, `#tilt mode entered` / `#tilt mode exited`.
    assert_eq!(
        String::from_utf8_lossy(&next_on(&mut all, "+tilt").await),
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$5\r\n+tilt\r\n$18\r\n#tilt mode entered\r\n"
    );
    let entered = Instant::now();
    assert_eq!(
        String::from_utf8_lossy(&named.read().await.0),
        ">3\r\n$7\r\nmessage\r\n$5\r\n+tilt\r\n$18\r\n#tilt mode entered\r\n"
    );
    assert_eq!(tilt(&addr).await, Some(true), "published while in TILT");
    assert_eq!(
        String::from_utf8_lossy(&next_on(&mut all, "-tilt").await),
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$5\r\n-tilt\r\n$17\r\n#tilt mode exited\r\n"
    );
    let lasted = entered.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&named.read().await.0),
        ">3\r\n$7\r\nmessage\r\n$5\r\n-tilt\r\n$17\r\n#tilt mode exited\r\n"
    );
    eprintln!("TILT-PERIOD 2000: -tilt {lasted:?} after +tilt");
    // Both are published within a beat of the change; only a subscriber that took one
    // much later than the other could see them closer than the period.
    assert!(
        lasted >= Duration::from_millis(1000) && lasted < Duration::from_secs(8),
        "-tilt {lasted:?} after +tilt with TILT-PERIOD 2000"
    );
    assert_eq!(tilt(&addr).await, Some(false), "-tilt once TILT is over");
    let (lines, ok) = py.finish();
    let of =
        |proto: &str| -> Vec<&str> { lines.iter().filter_map(|l| l.strip_prefix(proto)).collect() };
    assert!(ok, "redis-py: {lines:?}");
    assert_eq!(
        of("2 "),
        [
            "pmessage * +tilt #tilt mode entered",
            "pmessage * -tilt #tilt mode exited"
        ],
        "redis-py, RESP2, PSUBSCRIBE *: {lines:?}"
    );
    assert_eq!(
        of("3 "),
        [
            "message None +tilt #tilt mode entered",
            "message None -tilt #tilt mode exited"
        ],
        "redis-py, RESP3, SUBSCRIBE: {lines:?}"
    );
    let after = tilts_entered(node);
    assert!(
        before.is_some() && after == before.map(|b| b + 1),
        "one stall, one TILT counted: {before:?} then {after:?}"
    );
}

/// The `at_ms` of the node's own committed observation, if it says down.
async fn down_vote_at(c: &Cluster) -> Option<u64> {
    let mut api = c.nodes[0].client().await.ok()?;
    let d = api
        .get_master_detail(pb::GetMasterDetailRequest {
            name: "mymaster".into(),
        })
        .await
        .ok()?
        .into_inner();
    d.observations
        .iter()
        .find(|o| o.node_id == 1 && o.down)
        .map(|o| o.at_ms)
}

/// Distinct re-affirmations of the down vote seen during `window`.
async fn renewals(c: &Cluster, window: Duration) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let until = Instant::now() + window;
    while Instant::now() < until {
        if let Some(at) = down_vote_at(c).await {
            seen.insert(at);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_period_sets_how_often_a_down_vote_is_reaffirmed() {
    let mut master = RedisProcess::start(&[]);
    // down_after 1 s: a vote lives 5 s and is renewed every second by default.
    let c = one_node(&master, 1000).await;
    let mut s = RespClient::connect(&c.nodes[0].sentinel_addr()).await;
    master.kill9();
    // down_after, plus a TILT period if a start slowed by a loaded machine was a stall.
    eventually(Duration::from_secs(20), "the node votes down", || async {
        down_vote_at(&c).await
    })
    .await;
    let window = Duration::from_secs(3);
    let n = renewals(&c, window).await;
    eprintln!("default ASK-PERIOD: {n} renewals in 3 s");
    assert!(n <= 5, "default ASK-PERIOD: {n} renewals in 3 s");
    ok(&s.cmd(&["SENTINEL", "DEBUG", "ask-period", "50"]).await);
    let n = renewals(&c, window).await;
    eprintln!("ASK-PERIOD 50: {n} renewals in 3 s");
    // One every 50 ms plus a commit expected (30 or more); the node's own PING and
    // reconnect pace (a third of down_after) would give 9.
    assert!(n >= 10, "ASK-PERIOD 50: {n} renewals in 3 s");
    // However long the setting, a vote is renewed within a quarter of its 5 s lifetime, so
    // it never lapses while the master stays down.
    ok(&s
        .cmd(&["SENTINEL", "DEBUG", "ask-period", "86400000"])
        .await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = renewals(&c, window).await;
    eprintln!("ASK-PERIOD 86400000: {n} renewals in 3 s");
    assert!(n >= 2, "ASK-PERIOD 86400000: {n} renewals in 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_config_set_replies_match_real_redis_sentinel_byte_for_byte() {
    let master = RedisProcess::start(&[]);
    let c = one_node(&master, 5000).await;
    let real = RealSentinel::start(&master, 1, "");
    // Sentinel reads arguments in order and reports the first problem (its DEBUG applies the
    // pairs before a bad one; this node applies none, with the same reply). Redis 7.0's CONFIG
    // SET takes one pair, so only single pairs are compared.
    let commands: Vec<Vec<&str>> = vec![
        vec!["SENTINEL", "DEBUG", "no-such-param", "1"],
        vec!["SENTINEL", "DEBUG", "ping-period"],
        vec!["SENTINEL", "DEBUG", "PING-PERIOD", "0"],
        vec!["SENTINEL", "DEBUG", "info-period", "-5"],
        vec!["SENTINEL", "DEBUG", "info-period", "abc"],
        vec!["SENTINEL", "DEBUG", "info-period", "+5"],
        vec!["SENTINEL", "DEBUG", "info-period", "05"],
        vec!["SENTINEL", "DEBUG", "info-period", "1.5"],
        vec!["SENTINEL", "DEBUG", "info-period", "abc", "bogus"],
        vec!["SENTINEL", "DEBUG", "tilt-period", "30000", "bogus"],
        vec!["SENTINEL", "DEBUG", "ask-period", "1000", "tilt-trigger"],
        vec![
            "SENTINEL",
            "DEBUG",
            "Ask-Period",
            "1000",
            "TILT-TRIGGER",
            "2000",
        ],
        vec!["SENTINEL", "DEBUG", "default-down-after", "30000"],
        vec!["SENTINEL", "DEBUG", "script-retry-delay", "30000"],
        vec!["SENTINEL", "CONFIG", "SET", "bogus", "1"],
        vec!["SENTINEL", "CONFIG", "SET", "announce-port", "70000"],
        vec!["SENTINEL", "CONFIG", "SET", "announce-port", "-1"],
        vec!["SENTINEL", "CONFIG", "SET", "announce-port", "x"],
        vec!["SENTINEL", "CONFIG", "SET", "resolve-hostnames", "maybe"],
        vec!["SENTINEL", "CONFIG", "SET", "announce-hostnames", "YES"],
        vec!["SENTINEL", "CONFIG", "SET", "announce-hostnames", "no"],
        vec!["SENTINEL", "CONFIG", "SET", "sentinel-user", "u"],
        vec!["SENTINEL", "CONFIG", "SET", "sentinel-pass", "p"],
        vec!["SENTINEL", "CONFIG", "GET", "sentinel-*"],
        vec!["SENTINEL", "CONFIG", "SET", "sentinel-user", ""],
        vec!["SENTINEL", "CONFIG", "SET", "sentinel-pass", ""],
        vec!["SENTINEL", "CONFIG", "SET", "announce-port", "0"],
        vec!["SENTINEL", "CONFIG", "GET", "announce-*"],
    ];
    let mut ours = RespClient::connect(&c.nodes[0].sentinel_addr()).await;
    let mut theirs = RespClient::connect(&format!("127.0.0.1:{}", real.port)).await;
    for proto in ["2", "3"] {
        ours.cmd(&["HELLO", proto]).await;
        theirs.cmd(&["HELLO", proto]).await;
        for cmd in &commands {
            let (a, b) = (ours.raw(cmd).await, theirs.raw(cmd).await);
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "RESP{proto} {cmd:?}"
            );
        }
    }
    // Keys and order of the listing: Sentinel's, less the parameters that do not apply here.
    let ours_keys: Vec<String> = ours
        .cmd(&["SENTINEL", "DEBUG"])
        .await
        .pairs()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let theirs_keys: Vec<String> = theirs
        .cmd(&["SENTINEL", "DEBUG"])
        .await
        .pairs()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| {
            ![
                "PUBLISH-PERIOD",
                "SLAVE-RECONF-TIMEOUT",
                "MIN-LINK-RECONNECT-PERIOD",
                "ELECTION-TIMEOUT",
            ]
            .contains(&k.as_str())
        })
        .collect();
    assert_eq!(ours_keys, theirs_keys);
}

/// `ip:port` node `runid` is listed with by `SENTINEL SENTINELS mymaster` on `addr`.
async fn listed_as(addr: &str, runid: &str) -> Option<String> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut s = RespClient::connect(addr).await;
    s.send(&["SENTINEL", "SENTINELS", "mymaster"]).await;
    let items = s.try_read().await?.1.items();
    let me = items
        .iter()
        .find(|i| i.field("runid").as_deref() == Some(runid))?;
    Some(format!("{}:{}", me.field("ip")?, me.field("port")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_ip_and_port_change_the_address_other_nodes_list() {
    let master = RedisProcess::start(&[]);
    let opts = ClusterOpts {
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\n",
            master.addr()
        ),
        ..ClusterOpts::default()
    };
    let c = Cluster::start(opts);
    c.wait_leader(Duration::from_secs(30)).await;
    let two = c.nodes[1].sentinel_addr();
    let one = c.nodes[0].sentinel_addr();
    let mut s = eventually(Duration::from_secs(30), "node 2 answers", || {
        let two = two.clone();
        async move {
            tokio::net::TcpStream::connect(&two).await.ok()?;
            let mut s = RespClient::connect(&two).await;
            s.send(&["SENTINEL", "MYID"]).await;
            s.try_read().await?.1.text().map(|_| s)
        }
    })
    .await;
    let runid = s.cmd(&["SENTINEL", "MYID"]).await.text().unwrap();
    let wait_listed = |want: String| {
        let (one, runid) = (one.clone(), runid.clone());
        async move {
            eventually(
                Duration::from_secs(15),
                &format!("node 1 lists node 2 as {want}"),
                || {
                    let (one, runid, want) = (one.clone(), runid.clone(), want.clone());
                    async move { (listed_as(&one, &runid).await? == want).then_some(()) }
                },
            )
            .await
        }
    };
    wait_listed(two.clone()).await;
    let v = s.cmd(&["SENTINEL", "CONFIG", "GET", "announce-*"]).await;
    assert_eq!(v.field("announce-ip").as_deref(), Some(""));
    assert_eq!(v.field("announce-port").as_deref(), Some("0"));

    ok(&s
        .cmd(&[
            "SENTINEL",
            "CONFIG",
            "SET",
            "announce-ip",
            "127.0.0.9",
            "announce-port",
            "26999",
        ])
        .await);
    wait_listed("127.0.0.9:26999".into()).await;
    let v = s.cmd(&["SENTINEL", "CONFIG", "GET", "announce-*"]).await;
    assert_eq!(v.field("announce-ip").as_deref(), Some("127.0.0.9"));
    assert_eq!(v.field("announce-port").as_deref(), Some("26999"));

    // Empty and 0: the address it listens on again.
    ok(&s
        .cmd(&[
            "SENTINEL",
            "CONFIG",
            "SET",
            "announce-ip",
            "",
            "announce-port",
            "0",
        ])
        .await);
    wait_listed(two.clone()).await;

    // Not an address: refused, nothing changes.
    let v = s
        .cmd(&["SENTINEL", "CONFIG", "SET", "announce-ip", "a b"])
        .await;
    assert_eq!(
        v,
        support::resp::Value::Error(
            "ERR Invalid value 'a b' to SENTINEL CONFIG SET 'announce-ip'".into()
        )
    );
    // Sentinel checks for a duplicate before a missing value.
    let v = s
        .cmd(&[
            "SENTINEL",
            "CONFIG",
            "SET",
            "announce-port",
            "1",
            "ANNOUNCE-PORT",
        ])
        .await;
    assert_eq!(
        v,
        support::resp::Value::Error(
            "ERR Duplicate argument 'ANNOUNCE-PORT' to SENTINEL CONFIG SET".into()
        )
    );
    assert_eq!(listed_as(&one, &runid).await, Some(two));
}
