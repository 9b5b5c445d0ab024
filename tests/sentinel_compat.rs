//! Real Sentinel clients against the real binary: three `raft-sentinel` nodes watching a real
//! `redis-server` master and replica. Each client discovers the master through the Sentinel
//! port, writes, survives a `kill -9` of the master and writes again on the promoted replica.
//!
//! The Python and Node clients are installed by the test command into `tests/compat`
//! (`.venv` from `requirements.txt`, `node_modules` from `package.json`); a test whose client
//! is not installed fails with the install command rather than passing silently.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::real_sentinel::RealSentinel;
use support::resp::RespClient;
use support::{eventually, Cluster, ClusterOpts, RedisProcess};

const DOWN_AFTER_MS: u64 = 1000;

struct Topo {
    master: RedisProcess,
    replica: RedisProcess,
    cluster: Cluster,
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME mymaster` as `ip:port` (None without an answer in time).
async fn master_addr(c: &mut RespClient) -> Option<String> {
    c.send(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
        .await;
    let (_, v) = c.try_read().await?;
    Some(
        v.items()
            .iter()
            .filter_map(|x| x.text())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

impl Topo {
    async fn start() -> Topo {
        let master = RedisProcess::start(&[]);
        let replica = RedisProcess::start_replica(&master, &[]);
        let opts = ClusterOpts {
            extra_toml: format!(
                "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = {DOWN_AFTER_MS}\nfailover_timeout_ms = 10000\nparallel_syncs = 1\n",
                master.addr()
            ),
            ..ClusterOpts::default()
        };
        let cluster = Cluster::start(opts);
        cluster.wait_leader(Duration::from_secs(30)).await;
        let t = Topo {
            master,
            replica,
            cluster,
        };
        for addr in t.sentinels() {
            let want_master = t.master.addr();
            let want_replica = t.replica.addr();
            eventually(
                Duration::from_secs(30),
                "every node serves the master and knows the replica",
                || {
                    let addr = addr.clone();
                    let (want_master, want_replica) = (want_master.clone(), want_replica.clone());
                    async move {
                        let mut c = RespClient::connect(&addr).await;
                        if master_addr(&mut c).await? != want_master {
                            return None;
                        }
                        let reps = c.cmd(&["SENTINEL", "REPLICAS", "mymaster"]).await.items();
                        reps.iter()
                            .any(|r| {
                                r.field("name").as_deref() == Some(want_replica.as_str())
                                    && r.field("master-link-status").as_deref() == Some("ok")
                            })
                            .then_some(())
                    }
                },
            )
            .await;
        }
        t
    }

    fn sentinels(&self) -> Vec<String> {
        self.cluster
            .nodes
            .iter()
            .map(|n| n.sentinel_addr())
            .collect()
    }

    fn sentinel_list(&self) -> String {
        self.sentinels().join(",")
    }

    /// A client script's arguments: the script, the node list, `mymaster`, then `rest`.
    fn client_args(&self, script: &str, rest: &[&str]) -> Vec<String> {
        [script.to_string(), self.sentinel_list(), "mymaster".into()]
            .into_iter()
            .chain(rest.iter().map(|a| a.to_string()))
            .collect()
    }

    /// Waits until every node answers `addr` for mymaster.
    async fn wait_master(&self, addr: &str) {
        for s in self.sentinels() {
            eventually(
                Duration::from_secs(30),
                "every node answers the new master",
                || {
                    let s = s.clone();
                    let addr = addr.to_string();
                    async move {
                        let mut c = RespClient::connect(&s).await;
                        (master_addr(&mut c).await? == addr).then_some(())
                    }
                },
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_cache_returns_the_last_info_of_master_and_replicas() {
    let t = Topo::start().await;
    let addr = t.sentinels()[1].clone();
    let v = eventually(
        Duration::from_secs(10),
        "INFO text cached for both instances",
        || {
            let addr = addr.clone();
            async move {
                let mut c = RespClient::connect(&addr).await;
                let v = c
                    .cmd(&["SENTINEL", "INFO-CACHE", "mymaster", "nosuch"])
                    .await;
                let items = v.items();
                let ok = items.len() == 2
                    && items[1].items().len() == 2
                    && items[1]
                        .items()
                        .iter()
                        .all(|e| e.items()[1].text().is_some());
                ok.then_some(v)
            }
        },
    )
    .await;
    let items = v.items();
    assert_eq!(
        items[0].text().as_deref(),
        Some("mymaster"),
        "unknown names are skipped"
    );
    let entries = items[1].items();
    let texts: Vec<String> = entries
        .iter()
        .map(|e| e.items()[1].text().unwrap())
        .collect();
    assert!(
        texts[0].contains("role:master") && texts[0].contains("# Server"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains(&format!("tcp_port:{}", t.master.port)));
    assert!(
        texts[1].contains("role:slave")
            && texts[1].contains(&format!("master_port:{}", t.master.port))
    );
    for e in &entries {
        let age = match &e.items()[0] {
            support::resp::Value::Int(n) => *n,
            other => panic!("age must be an integer: {other:?}"),
        };
        assert!((0..5000).contains(&age), "age {age} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nodes_serve_sentinel_replies_and_switch_together() {
    let mut t = Topo::start().await;
    let mut c = RespClient::connect(&t.sentinels()[0]).await;
    let m = c.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    let runid = m.field("runid").unwrap();
    assert_eq!(runid.len(), 40, "the master's run id from INFO: {m:?}");
    assert_eq!(m.field("flags").unwrap(), "master");
    assert_eq!(m.field("num-slaves").unwrap(), "1");
    assert_eq!(m.field("num-other-sentinels").unwrap(), "2");
    let sentinels = c.cmd(&["SENTINEL", "SENTINELS", "mymaster"]).await.items();
    let mut ports: Vec<String> = sentinels.iter().map(|s| s.field("port").unwrap()).collect();
    ports.sort();
    let mut want: Vec<String> = t.cluster.nodes[1..]
        .iter()
        .map(|n| n.sentinel_port.to_string())
        .collect();
    want.sort();
    assert_eq!(ports, want);
    let info = c.cmd(&["INFO", "server"]).await.text().unwrap();
    assert!(info.contains("redis_mode:sentinel\r\n"));

    // One subscriber per node, RESP2 and RESP3, then kill the master.
    let mut subs = Vec::new();
    for (i, addr) in t.sentinels().iter().enumerate() {
        let mut s = RespClient::connect(addr).await;
        if i == 1 {
            s.cmd(&["HELLO", "3"]).await;
        }
        s.cmd(&["SUBSCRIBE", "+switch-master"]).await;
        s.timeout = Duration::from_secs(40);
        subs.push(s);
    }
    let old = t.master.addr();
    let new = t.replica.addr();
    t.master.kill9();
    let payload = format!(
        "mymaster 127.0.0.1 {} 127.0.0.1 {}",
        t.master.port, t.replica.port
    );
    for (i, s) in subs.iter_mut().enumerate() {
        let (raw, v) = s.read().await;
        let items = v.items();
        assert_eq!(items[0].text().unwrap(), "message", "node {i}: {v:?}");
        assert_eq!(items[1].text().unwrap(), "+switch-master");
        assert_eq!(items[2].text().unwrap(), payload);
        assert_eq!(raw[0], if i == 1 { b'>' } else { b'*' });
    }
    t.wait_master(&new).await;
    assert_ne!(old, new);
    let m = c.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert_eq!(m.field("port").unwrap(), t.replica.port.to_string());
    assert_eq!(m.field("config-epoch").unwrap(), "1");
}

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// How the master goes away while a client writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disrupt {
    /// `kill -9` of the master.
    Kill,
    /// `raft-sentinel ctl switchover mymaster`: the zero-loss path (Redis `FAILOVER TO`);
    /// the old master stays up and becomes a replica.
    Switchover,
}

/// Runs a client script; once it printed its first `MASTER` line, kills the master; then
/// waits for it to finish and checks it wrote to the promoted replica.
async fn run_client(t: &mut Topo, program: &str, args: &[String]) {
    run_client_through(t, program, args, Disrupt::Kill).await;
}

/// [`run_client`] with a choice of disruption. Returns the client's output lines.
async fn run_client_through(
    t: &mut Topo,
    program: &str,
    args: &[String],
    disrupt: Disrupt,
) -> Vec<String> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(compat_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let out = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("[client] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = rx.recv().await {
            if l.starts_with("MASTER ") {
                return Some(l);
            }
        }
        None
    })
    .await
    .expect("client found no master in 30 s")
    .expect("client exited early");
    assert_eq!(first, format!("MASTER {}", t.master.addr()));
    match disrupt {
        Disrupt::Kill => t.master.kill9(),
        Disrupt::Switchover => {
            let (code, out, err) = t.cluster.ctl(&["switchover", "mymaster"]);
            assert_eq!(code, 0, "ctl switchover failed: {out} {err}");
        }
    }
    let mut lines = Vec::new();
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(90), rx.recv()).await {
        lines.push(l);
    }
    let status = child.wait().unwrap();
    let masters: Vec<&String> = lines.iter().filter(|l| l.starts_with("MASTER ")).collect();
    assert!(status.success(), "client failed: {lines:?}");
    assert_eq!(
        masters.last().map(|s| s.as_str()),
        Some(format!("MASTER {}", t.replica.addr()).as_str()),
        "{lines:?}"
    );
    // The promoted replica really is a master now and holds the client's writes.
    assert_eq!(t.replica.role().as_deref(), Some("master"));
    lines
}

fn python() -> String {
    let venv = compat_dir().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "redis-py is not installed: python3 -m venv tests/compat/.venv && tests/compat/.venv/bin/pip install -r tests/compat/requirements.txt"
    );
    venv.display().to_string()
}

fn node() -> String {
    assert!(
        compat_dir().join("node_modules/ioredis").exists()
            && compat_dir().join("node_modules/redis").exists(),
        "Node clients are not installed: (cd tests/compat && npm install)"
    );
    "node".into()
}

/// One test per client and mode: the client runs against the nodes while the master is
/// killed, and must follow the failover.
macro_rules! client_follows_a_master_kill {
    ($($name:ident: $interp:expr, $script:literal, [$($arg:literal),*];)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let mut t = Topo::start().await;
            let args = t.client_args($script, &[$($arg),*]);
            run_client(&mut t, &$interp, &args).await;
        }
    )*};
}

client_follows_a_master_kill! {
    redis_py_sync_resp3: python(), "redis_py.py", ["sync", "3", "60"];
    redis_py_async_resp3: python(), "redis_py.py", ["async", "3", "60"];
    redis_py_sync_resp2: python(), "redis_py.py", ["sync", "2", "60"];
    redis_py_async_resp2: python(), "redis_py.py", ["async", "2", "60"];
    ioredis_follows_a_master_kill: node(), "ioredis.js", ["60"];
    ioredis_with_failover_detector: node(), "ioredis.js", ["60", "detector"];
    node_redis_follows_a_master_kill: node(), "node_redis.js", ["60"];
}

/// node-redis through a planned switchover with the old master left running: it sees no
/// closed socket from a dead server and `+switch-master` does not match its `switch-master`
/// pattern, so it must learn of the change from the other events it subscribes to, or from
/// READONLY on the demoted master. Writes continue on the new master, which holds the last
/// write the client saw succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis_follows_a_planned_switchover() {
    let mut t = Topo::start().await;
    let args = t.client_args("node_redis.js", &["60"]);
    let lines = run_client_through(&mut t, &node(), &args, Disrupt::Switchover).await;
    // The old master is alive and now replicates from the new one.
    assert_eq!(t.master.role().as_deref(), Some("slave"));
    t.wait_master(&t.replica.addr()).await;
    // The last write the client saw succeed is on the new master, and the demoted one
    // followed it there.
    let result = lines
        .iter()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("RESULT line");
    let last = result
        .split("\"last\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .expect("last in RESULT")
        .to_string();
    let get = |r: &RedisProcess| -> Option<String> {
        redis::cmd("GET")
            .arg("compat:node-redis")
            .query(&mut r.client())
            .ok()
    };
    assert_eq!(get(&t.replica).as_deref(), Some(last.as_str()), "{lines:?}");
    eventually(
        Duration::from_secs(10),
        "the demoted master replicates the last write",
        || {
            let got = get(&t.master);
            let last = last.clone();
            async move { (got.as_deref() == Some(last.as_str())).then_some(()) }
        },
    )
    .await;
}

/// redis-cli the way shell scripts use it: ask a sentinel, write to the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_discovers_and_writes() {
    let mut t = Topo::start().await;
    let ask = |sentinel: &str| -> Option<String> {
        let (host, port) = sentinel.rsplit_once(':')?;
        let out = Command::new("redis-cli")
            .args([
                "-h",
                host,
                "-p",
                port,
                "SENTINEL",
                "get-master-addr-by-name",
                "mymaster",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut l = text.lines();
        Some(format!("{}:{}", l.next()?, l.next()?))
    };
    let write = |addr: &str, v: &str| -> bool {
        let (host, port) = addr.rsplit_once(':').unwrap();
        Command::new("redis-cli")
            .args(["-h", host, "-p", port, "SET", "compat:cli", v])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "OK")
    };
    let s0 = t.sentinels()[0].clone();
    let before = ask(&s0).expect("redis-cli reply");
    assert_eq!(before, t.master.addr());
    assert!(write(&before, "1"));
    t.master.kill9();
    let new = t.replica.addr();
    let sentinels = t.sentinels();
    eventually(
        Duration::from_secs(30),
        "redis-cli sees the new master",
        || {
            let ok = sentinels
                .iter()
                .all(|s| ask(s).as_deref() == Some(new.as_str()));
            async move { ok.then_some(()) }
        },
    )
    .await;
    assert!(write(&new, "2"));
}

// === Side-by-side shape check against a real redis-sentinel ===

use support::resp::Value;

/// The shape of a reply: types all the way down, and the keys of every map (RESP3 maps, and
/// RESP2 flat arrays whose even elements are the instance-map keys passed in `maps`).
fn shape(v: &Value, flat_maps: bool) -> String {
    match v {
        Value::Simple(_) => "simple".into(),
        Value::Error(e) => format!("error({})", e.split(' ').next().unwrap_or("")),
        Value::Int(_) => "int".into(),
        Value::Bulk(None) | Value::Array(None) | Value::Null => "null".into(),
        Value::Bulk(Some(_)) => "bulk".into(),
        Value::Map(m) => format!(
            "map{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}:{}", k.text().unwrap_or_default(), shape(v, flat_maps)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Array(Some(items))
            if flat_maps
                && items.len() % 2 == 0
                && !items.is_empty()
                && items.iter().all(|i| matches!(i, Value::Bulk(Some(_)))) =>
        {
            format!(
                "flat{{{}}}",
                items
                    .chunks(2)
                    .map(|c| c[0].text().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Value::Array(Some(items)) | Value::Set(items) | Value::Push(items) => {
            let mut shapes: Vec<String> = items.iter().map(|i| shape(i, flat_maps)).collect();
            // Lists of instances differ in length (three coordinators vs two sentinels):
            // compare the distinct element shapes.
            shapes.dedup();
            format!("[{}]", shapes.join(","))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_reply_shapes_as_real_redis_sentinel() {
    let t = Topo::start().await;
    // Two real sentinels, so SENTINEL SENTINELS has an entry on the real side too.
    let real = [
        RealSentinel::start(
            &t.master,
            2,
            "sentinel down-after-milliseconds mymaster 1000\n",
        ),
        RealSentinel::start(
            &t.master,
            2,
            "sentinel down-after-milliseconds mymaster 1000\n",
        ),
    ];
    for r in &real {
        let addr = r.addr();
        eventually(
            Duration::from_secs(30),
            "real sentinel sees its peer and the replica",
            || {
                let addr = addr.clone();
                async move {
                    let mut c = RespClient::connect(&addr).await;
                    let peers = c
                        .cmd(&["SENTINEL", "SENTINELS", "mymaster"])
                        .await
                        .items()
                        .len();
                    let reps = c.cmd(&["SENTINEL", "REPLICAS", "mymaster"]).await.items();
                    let linked = reps
                        .iter()
                        .any(|r| r.field("master-link-status").as_deref() == Some("ok"));
                    (peers == 1 && linked).then_some(())
                }
            },
        )
        .await;
    }
    let ours = t.sentinels()[0].clone();
    let theirs = real[0].addr();
    let commands: Vec<Vec<&str>> = vec![
        vec!["PING"],
        vec!["PING", "x"],
        vec!["ROLE"],
        vec!["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
        vec!["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"],
        vec!["SENTINEL", "MASTER", "mymaster"],
        vec!["SENTINEL", "MASTER", "nope"],
        vec!["SENTINEL", "MASTERS"],
        vec!["SENTINEL", "REPLICAS", "mymaster"],
        vec!["SENTINEL", "SLAVES", "mymaster"],
        vec!["SENTINEL", "SENTINELS", "mymaster"],
        vec!["SENTINEL", "CKQUORUM", "mymaster"],
        vec!["SENTINEL", "MYID"],
        vec!["SENTINEL", "FOO"],
        vec!["SENTINEL", "MASTER"],
        vec!["SENTINEL", "RESET", "nothing-matches"],
        vec!["FOO", "bar"],
        vec!["CLIENT", "ID"],
        vec!["CLIENT", "GETNAME"],
        vec!["CLIENT", "SETNAME", "x"],
        vec!["COMMAND", "COUNT"],
        vec!["AUTH", "x"],
    ];
    for proto in ["2", "3"] {
        let mut a = RespClient::connect(&ours).await;
        let mut b = RespClient::connect(&theirs).await;
        let (ha, hb) = (
            a.cmd(&["HELLO", proto]).await,
            b.cmd(&["HELLO", proto]).await,
        );
        assert_eq!(shape(&ha, true), shape(&hb, true), "HELLO {proto}");
        for cmd in &commands {
            let (va, vb) = (a.cmd(cmd).await, b.cmd(cmd).await);
            assert_eq!(
                shape(&va, true),
                shape(&vb, true),
                "RESP{proto} {cmd:?}\n ours:   {va:?}\n theirs: {vb:?}"
            );
        }
        // INFO: same sections in the same order, and the same keys in the Sentinel section.
        let ia = a.cmd(&["INFO"]).await.text().unwrap();
        let ib = b.cmd(&["INFO"]).await.text().unwrap();
        let headers = |s: &str| {
            s.lines()
                .filter(|l| l.starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(headers(&ia), headers(&ib));
        let sentinel_keys = |s: &str| {
            s.split("# Sentinel")
                .nth(1)
                .unwrap_or("")
                .lines()
                .filter_map(|l| {
                    l.split(':')
                        .next()
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sentinel_keys(&ia), sentinel_keys(&ib));
        // CONFIG GET: Redis 7.0 lacks 7.2's loglevel; every key it has comes in the same order.
        let ca = a.cmd(&["SENTINEL", "CONFIG", "GET", "*"]).await.pairs();
        let cb = b.cmd(&["SENTINEL", "CONFIG", "GET", "*"]).await.pairs();
        let ka: Vec<String> = ca
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "loglevel")
            .collect();
        let kb: Vec<String> = cb.into_iter().map(|(k, _)| k).collect();
        assert_eq!(ka, kb);
        // Pub/Sub confirmations and PING while subscribed: byte for byte.
        for cmd in [
            vec!["SUBSCRIBE", "+switch-master"],
            vec!["PING"],
            vec!["PSUBSCRIBE", "*"],
            vec!["PUNSUBSCRIBE"],
            vec!["UNSUBSCRIBE"],
        ] {
            let (ra, rb) = (a.raw(&cmd).await, b.raw(&cmd).await);
            assert_eq!(
                String::from_utf8_lossy(&ra),
                String::from_utf8_lossy(&rb),
                "RESP{proto} {cmd:?}"
            );
        }
    }
}

// === The redis crate's Sentinel client ===

/// `host:port` of a client the redis crate built for a data node.
fn rs_addr(c: &redis::Client) -> String {
    match c.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        other => panic!("unexpected address {other:?}"),
    }
}

/// The port the data node behind a connection listens on (`INFO server`), so the test knows
/// which server its writes reached.
async fn rs_server_port(con: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<u16> {
    let info: String = redis::cmd("INFO").arg("server").query_async(con).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("tcp_port:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("tcp_port in INFO server"))
}

/// `redis::sentinel::SentinelClient` (async) and `Sentinel` (sync), as an application uses
/// them: ROLE must say `sentinel`, SENTINEL MASTERS must hold a valid master entry, ROLE on
/// the data node must say `master`. On any error the application drops its connection and
/// asks again, which is how the crate expects to follow a failover.
async fn redis_rs(protocol: &str) {
    use redis::sentinel::{
        Sentinel, SentinelClient, SentinelNodeConnectionInfo, SentinelServerType,
    };
    use redis::AsyncCommands;

    let mut t = Topo::start().await;
    let urls: Vec<String> = t
        .sentinels()
        .iter()
        .map(|a| format!("redis://{a}/?protocol={protocol}"))
        .collect();
    let proto = if protocol == "resp3" {
        redis::ProtocolVersion::RESP3
    } else {
        redis::ProtocolVersion::RESP2
    };
    let node_info = SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(redis::RedisConnectionInfo::default().set_protocol(proto));

    // The sync Sentinel finds the master.
    let sync_master = {
        let (urls, node_info) = (urls.clone(), node_info.clone());
        tokio::task::spawn_blocking(move || {
            let mut s = Sentinel::build(urls).unwrap();
            let c = s.master_for("mymaster", Some(&node_info)).unwrap();
            let mut con = c.get_connection().unwrap();
            redis::cmd("SET")
                .arg("compat:redis-rs:sync")
                .arg("1")
                .exec(&mut con)
                .unwrap();
            rs_addr(&c)
        })
        .await
        .unwrap()
    };
    assert_eq!(sync_master, t.master.addr());

    let mut client = SentinelClient::build(
        urls.clone(),
        "mymaster",
        Some(node_info.clone()),
        SentinelServerType::Master,
    )
    .unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    assert_eq!(rs_server_port(&mut con).await.unwrap(), t.master.port);
    let _: () = con.set("compat:redis-rs", 0).await.unwrap();

    t.master.kill9();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0u64;
    let mut errors = 0u32;
    let mut ok_on_new = 0;
    let mut current: Option<redis::aio::MultiplexedConnection> = Some(con);
    while ok_on_new < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-rs did not reach the new master; {errors} errors"
        );
        n += 1;
        let result = async {
            if current.is_none() {
                current = Some(client.get_async_connection().await?);
            }
            let con = current.as_mut().unwrap();
            let _: () = con.set("compat:redis-rs", n).await?;
            rs_server_port(con).await
        }
        .await;
        match result {
            Ok(port) => {
                assert_ne!(port, t.master.port, "a write reached the killed master");
                if port == t.replica.port {
                    ok_on_new += 1;
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("[redis-rs] {e}");
                current = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The promoted replica is a master and holds the last write.
    assert_eq!(t.replica.role().as_deref(), Some("master"));
    let mut direct = redis::Client::open(format!("redis://{}/", t.replica.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let last: u64 = direct.get("compat:redis-rs").await.unwrap();
    assert_eq!(last, n);

    // The sync Sentinel agrees.
    let after = tokio::task::spawn_blocking(move || {
        let mut s = Sentinel::build(urls).unwrap();
        rs_addr(&s.master_for("mymaster", Some(&node_info)).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(after, t.replica.addr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_sentinel_client_resp2() {
    redis_rs("resp2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_sentinel_client_resp3() {
    redis_rs("resp3").await;
}
