//! The Sentinel port served in-process over real Raft nodes (in-memory network, so a node can
//! be isolated): byte-exact replies and errors, writes through the log from any node, Pub/Sub
//! in RESP2 and RESP3, AUTH, the stale guard, malformed input, slow readers, the connection
//! cap, CLIENT KILL and graceful shutdown.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_sentinel::api::resp::{self, RespContext, RespOptions};
use raft_sentinel::consensus::{DiskStore, MemNetwork, NodeConfig, RaftHandle, RaftNode, Role};
use raft_sentinel::fsm::{Command, MasterSpec, MemberInfo, ObserveReason};
use raft_sentinel::shutdown::{self, ShutdownTrigger};
use raft_sentinel::view::{InstanceInfo, MonitorView, ReportedRole};
use support::resp::{encode, RespClient, Value};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(20);
const ELECTION_TICKS: usize = 10;

struct Node {
    raft: RaftHandle,
    raft_stop: ShutdownTrigger,
    raft_task: tokio::task::JoinHandle<()>,
    resp_stop: ShutdownTrigger,
    resp_task: tokio::task::JoinHandle<()>,
    addr: String,
    run_id: String,
    _view: watch::Sender<Arc<MonitorView>>,
    _dir: TempDir,
}

struct Harness {
    net: MemNetwork,
    nodes: BTreeMap<u64, Node>,
}

fn master_spec() -> MasterSpec {
    MasterSpec {
        down_after_ms: 1000,
        failover_timeout_ms: 10_000,
        ..MasterSpec::new("mymaster", "127.0.0.1:6379".parse().unwrap(), 2)
    }
}

/// A monitor view in which the master is up and known, so instance maps carry real values.
fn view() -> MonitorView {
    let mut v = MonitorView::default();
    let addr = master_spec().addr;
    let mut i = InstanceInfo::new(addr.clone(), "mymaster");
    i.run_id = Some("a".repeat(40));
    i.role = Some(ReportedRole::Master);
    i.connected = true;
    let now = Instant::now();
    i.last_ok_ping_reply = Some(now);
    i.last_ping_reply = Some(now);
    i.info_refresh = Some(now);
    i.role_reported_at = Some(now);
    v.instances.insert(addr, i);
    v
}

impl Harness {
    async fn start(n: u64, requirepass: Option<&str>, opts: RespOptions) -> Harness {
        let net = MemNetwork::new();
        let voters: Vec<u64> = (1..=n).collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let run_id = format!("{:040x}", id * 0x1111);
            let dir = tempfile::tempdir().unwrap();
            let (store, rec) = DiskStore::open(dir.path(), id, "test").unwrap();
            let mailbox = RaftNode::mailbox();
            let transport = net.register(id, mailbox.0.clone());
            let (raft_stop, raft_shutdown) = shutdown::channel();
            let cfg = NodeConfig {
                id,
                tick: TICK,
                election_ticks: ELECTION_TICKS,
                heartbeat_ticks: 2,
                compact_threshold: 1000,
                bootstrap_masters: vec![master_spec()],
                self_info: MemberInfo {
                    sentinel_addr: Some(addr.clone()),
                    run_id: Some(run_id.clone()),
                    ..MemberInfo::default()
                },
                configured_peers: voters.iter().map(|v| (*v, format!("n{v}:1"))).collect(),
            };
            let (raft, raft_task) = RaftNode::start(
                cfg,
                store,
                rec,
                &voters,
                mailbox,
                Box::new(transport),
                raft_shutdown,
            )
            .unwrap();
            let (view_tx, view_rx) = watch::channel(Arc::new(view()));
            let ctx = RespContext::new(
                raft.clone(),
                view_rx,
                requirepass.map(str::to_string),
                run_id.clone(),
                addr.clone(),
            )
            .with_options(opts.clone());
            let (resp_stop, resp_shutdown) = shutdown::channel();
            let resp_task = tokio::spawn(resp::serve(listener, ctx, resp_shutdown));
            nodes.insert(
                id,
                Node {
                    raft,
                    raft_stop,
                    raft_task,
                    resp_stop,
                    resp_task,
                    addr,
                    run_id,
                    _view: view_tx,
                    _dir: dir,
                },
            );
        }
        let h = Harness { net, nodes };
        h.wait_ready().await;
        h
    }

    /// Every node applied the bootstrap and every member announced its sentinel address.
    async fn wait_ready(&self) {
        let n = self.nodes.len();
        for node in self.nodes.values() {
            let mut rx = node.raft.watch_state();
            tokio::time::timeout(
                Duration::from_secs(15),
                rx.wait_for(|s| {
                    s.bootstrapped
                        && s.members.len() == n
                        && s.members.values().all(|m| m.info.sentinel_addr.is_some())
                }),
            )
            .await
            .expect("cluster ready")
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.nodes.values().all(|n| n.raft.has_leader_contact()) {
            assert!(Instant::now() < deadline, "leader contact everywhere");
            tokio::time::sleep(TICK).await;
        }
    }

    fn addr(&self, id: u64) -> &str {
        &self.nodes[&id].addr
    }

    async fn client(&self, id: u64) -> RespClient {
        RespClient::connect(self.addr(id)).await
    }

    fn leader(&self) -> u64 {
        *self
            .nodes
            .iter()
            .find(|(_, n)| n.raft.status().role == Role::Leader)
            .expect("a leader")
            .0
    }

    async fn stop(self) {
        for (_, n) in self.nodes {
            n.resp_stop.trigger();
            let _ = n.resp_task.await;
            n.raft_stop.trigger();
            let _ = n.raft_task.await;
        }
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_errors_are_byte_exact() {
    let h = Harness::start(1, None, RespOptions::default()).await;
    let mut c = h.client(1).await;
    c.expect_replies(&[
        (&["PING"], "+PONG\r\n"),
        (&["ping", "hi"], "$2\r\nhi\r\n"),
        (
            &["PING", "a", "b"],
            "-ERR wrong number of arguments for 'ping' command\r\n",
        ),
    ])
    .await;
    let id = match c.cmd(&["CLIENT", "ID"]).await {
        Value::Int(i) => i,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s(&c.raw(&["HELLO", "3"]).await),
        format!("%6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n")
    );
    // RESP3 now: null array becomes `_`.
    assert_eq!(
        s(&c.raw(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"])
            .await),
        "_\r\n"
    );
    assert_eq!(
        s(&c.raw(&["HELLO", "2"]).await),
        format!("*12\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n")
    );
    c.expect_replies(&[
        (&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"], "*-1\r\n"),
        (&["HELLO", "4"], "-NOPROTO unsupported protocol version\r\n"),
        (&["HELLO", "x"], "-ERR Protocol version is not an integer or out of range\r\n"),
        (&["HELLO", "3", "SETNAME", "a b"], "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"),
        (&["HELLO", "3", "FOO"], "-ERR Syntax error in HELLO option 'FOO'\r\n"),
        (&["FOO"], "-ERR unknown command 'FOO', with args beginning with: \r\n"),
        (&["GET", "a", "b"], "-ERR unknown command 'GET', with args beginning with: 'a' 'b' \r\n"),
        (&["SENTINEL"], "-ERR wrong number of arguments for 'sentinel' command\r\n"),
        (&["SENTINEL", "BAR"], "-ERR unknown subcommand 'BAR'. Try SENTINEL HELP.\r\n"),
        (&["SENTINEL", "MASTER"], "-ERR wrong number of arguments for 'sentinel|master' command\r\n"),
        (&["SENTINEL", "MASTER", "nope"], "-ERR No such master with that name\r\n"),
        (&["AUTH", "x"], "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"),
        (&["AUTH", "u", "x"], "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
        (&["AUTH", "default", "x"], "+OK\r\n"),
        (&["ROLE"], "*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n"),
        (&["CLIENT", "GETNAME"], "$-1\r\n"),
        (&["CLIENT", "SETNAME", "app1"], "+OK\r\n"),
        (&["CLIENT", "GETNAME"], "$4\r\napp1\r\n"),
        (&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"], "+OK\r\n"),
        (&["CLIENT", "SETINFO", "LIB-FOO", "x"], "-ERR Unrecognized option 'LIB-FOO'\r\n"),
        (&["CLIENT", "MAINT_NOTIFICATIONS", "ON"], "-ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.\r\n"),
    ])
    .await;
    let info = c.cmd(&["CLIENT", "INFO"]).await.text().unwrap();
    assert!(info.starts_with(&format!("id={id} addr=")), "{info}");
    assert!(
        info.contains(" name=app1 ") && info.contains("lib-name=redis-py"),
        "{info}"
    );
    assert!(info.ends_with('\n'));
    c.expect_replies(&[
        (&["COMMAND", "COUNT"], ":13\r\n"),
        (
            &["COMMAND", "FOO"],
            "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n",
        ),
    ])
    .await;
    let myid = c.cmd(&["SENTINEL", "MYID"]).await.text().unwrap();
    assert_eq!(myid, h.nodes[&1].run_id);
    // Inline commands, as typed into telnet.
    c.send_raw(b"PING \"a b\"\r\n").await;
    assert_eq!(s(&c.read().await.0), "$3\r\na b\r\n");
    assert_eq!(s(&c.raw(&["QUIT"]).await), "+OK\r\n");
    assert!(c.closed_within(Duration::from_secs(2)).await);
    h.stop().await;
}

/// The fields every Sentinel instance map starts with, in Sentinel's order.
const HEAD_KEYS: [&str; 11] = [
    "name",
    "ip",
    "port",
    "runid",
    "flags",
    "link-pending-commands",
    "link-refcount",
    "last-ping-sent",
    "last-ok-ping-reply",
    "last-ping-reply",
    "down-after-milliseconds",
];

/// Sentinel's field order for masters (see SENTINEL-SURFACE.md 1.1).
fn master_keys() -> Vec<&'static str> {
    [
        &HEAD_KEYS[..],
        &[
            "info-refresh",
            "role-reported",
            "role-reported-time",
            "config-epoch",
            "num-slaves",
            "num-other-sentinels",
            "quorum",
            "failover-timeout",
            "parallel-syncs",
        ],
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_and_instance_maps() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    let follower = (1..=3).find(|id| *id != h.leader()).unwrap();
    let mut c = h.client(follower).await;
    c.expect_replies(&[
        (
            &["SENTINEL", "get-master-addr-by-name", "mymaster"],
            "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n",
        ),
        (
            &["SENTINEL", "GET-PRIMARY-ADDR-BY-NAME", "mymaster"],
            "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n",
        ),
    ])
    .await;
    let m = c.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert!(matches!(m, Value::Array(_)), "RESP2 maps are flat arrays");
    let keys: Vec<String> = m.pairs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, master_keys());
    assert_eq!(m.field("ip").unwrap(), "127.0.0.1");
    assert_eq!(m.field("port").unwrap(), "6379");
    assert_eq!(m.field("runid").unwrap(), "a".repeat(40));
    assert_eq!(m.field("flags").unwrap(), "master");
    assert_eq!(m.field("num-other-sentinels").unwrap(), "2");
    assert_eq!(m.field("quorum").unwrap(), "2");
    // Every value is a bulk string, numbers included.
    assert!(m
        .pairs()
        .iter()
        .all(|(_, v)| matches!(v, Value::Bulk(Some(_)))));

    let masters = c.cmd(&["SENTINEL", "MASTERS"]).await.items();
    assert_eq!(masters.len(), 1);
    assert_eq!(masters[0].field("name").unwrap(), "mymaster");
    assert_eq!(c.cmd(&["SENTINEL", "PRIMARIES"]).await.items().len(), 1);
    assert_eq!(
        c.cmd(&["SENTINEL", "PRIMARY", "mymaster"])
            .await
            .field("name")
            .unwrap(),
        "mymaster"
    );

    let sentinels = c.cmd(&["SENTINEL", "SENTINELS", "mymaster"]).await.items();
    assert_eq!(sentinels.len(), 2, "the other two members");
    let mut ports: Vec<String> = sentinels.iter().map(|e| e.field("port").unwrap()).collect();
    ports.sort();
    let mut want: Vec<String> = (1..=3)
        .filter(|id| *id != follower)
        .map(|id| h.addr(id).rsplit(':').next().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(ports, want);
    let keys: Vec<String> = sentinels[0].pairs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            &HEAD_KEYS[..],
            &["last-hello-message", "voted-leader", "voted-leader-epoch"],
        ]
        .concat()
    );
    assert!(sentinels[0].field("flags").unwrap().contains("sentinel"));
    assert_eq!(sentinels[0].field("name"), sentinels[0].field("runid"));

    c.expect_replies(&[
        (&["SENTINEL", "REPLICAS", "mymaster"], "*0\r\n"),
        (&["SENTINEL", "SLAVES", "mymaster"], "*0\r\n"),
    ])
    .await;
    assert_eq!(
        s(&c.raw(&["SENTINEL", "CKQUORUM", "mymaster"]).await),
        "+OK 2 usable Sentinels. Quorum and failover authorization can be reached\r\n",
        "a follower in contact with its leader proves a majority"
    );
    let mut l = h.client(h.leader()).await;
    assert_eq!(
        s(&l.raw(&["SENTINEL", "CKQUORUM", "mymaster"]).await),
        "+OK 3 usable Sentinels. Quorum and failover authorization can be reached\r\n"
    );

    // RESP3: maps, and the arrays of maps redis-py and node-redis need.
    c.cmd(&["HELLO", "3"]).await;
    let m = c.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert!(matches!(m, Value::Map(_)));
    let masters = c.cmd(&["SENTINEL", "MASTERS"]).await;
    assert!(matches!(&masters.items()[0], Value::Map(_)));
    let sentinels = c.cmd(&["SENTINEL", "SENTINELS", "mymaster"]).await;
    assert!(matches!(&sentinels.items()[0], Value::Map(_)));

    let info = c.cmd(&["INFO"]).await.text().unwrap();
    for needle in [
        "# Server\r\nredis_version:7.2.4\r\n",
        "redis_mode:sentinel\r\n",
        "\r\n\r\n# Clients\r\nconnected_clients:",
        "# CPU\r\n",
        "# Stats\r\ntotal_connections_received:",
        "# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\n",
        "master0:name=mymaster,status=ok,address=127.0.0.1:6379,slaves=0,sentinels=3\r\n",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle:?}:\n{info}");
    }
    let only = c.cmd(&["INFO", "sentinel"]).await.text().unwrap();
    assert!(only.starts_with("# Sentinel\r\n") && !only.contains("# Server"));
    assert_eq!(c.cmd(&["INFO", "nosuch"]).await.text().unwrap(), "");
    let cfg = c.cmd(&["SENTINEL", "CONFIG", "GET", "*"]).await;
    let keys: Vec<String> = cfg.pairs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "resolve-hostnames",
            "announce-hostnames",
            "announce-ip",
            "announce-port",
            "sentinel-user",
            "sentinel-pass",
            "loglevel"
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_the_log_from_any_node() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    let follower = (1..=3).find(|id| *id != h.leader()).unwrap();
    let other = (1..=3).find(|id| *id != follower).unwrap();
    let mut c = h.client(follower).await;
    let mut o = h.client(other).await;
    assert_eq!(
        s(
            &c.raw(&["SENTINEL", "MONITOR", "m2", "127.0.0.1", "7000", "2"])
                .await
        ),
        "+OK\r\n"
    );
    // Applied on the node that answered; the other node has it once it applied the entry.
    assert_eq!(
        s(&c.raw(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m2"]).await),
        "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7000\r\n"
    );
    support::eventually(Duration::from_secs(5), "m2 on the other node", || {
        let addr = h.addr(other).to_string();
        async move {
            let mut o = RespClient::connect(&addr).await;
            let v = o.cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m2"]).await;
            (v.items().len() == 2).then_some(())
        }
    })
    .await;
    // The same setup script sent to every node: identical MONITOR is accepted.
    o.expect_replies(&[
        (
            &["SENTINEL", "MONITOR", "m2", "127.0.0.1", "7000", "2"],
            "+OK\r\n",
        ),
        (
            &["SENTINEL", "MONITOR", "m2", "127.0.0.1", "7000", "3"],
            "-ERR Duplicate master name.\r\n",
        ),
    ])
    .await;
    for (args, want) in [
        (["x", "127.0.0.1", "7000", "q"], "-ERR Invalid quorum\r\n"),
        (["x", "127.0.0.1", "p", "2"], "-ERR Invalid port\r\n"),
        (
            ["x", "127.0.0.1", "7000", "0"],
            "-ERR Quorum must be 1 or greater.\r\n",
        ),
        (
            ["x", "not-an-ip", "7000", "2"],
            "-ERR Invalid IP address or hostname specified\r\n",
        ),
        (
            ["x", "127.0.0.1", "70000", "2"],
            "-ERR Invalid port number.\r\n",
        ),
    ] {
        let mut a = vec!["SENTINEL", "MONITOR"];
        a.extend(args);
        assert_eq!(s(&c.raw(&a).await), want, "{a:?}");
    }
    assert_eq!(
        s(&c.raw(&[
            "SENTINEL",
            "SET",
            "m2",
            "down-after-milliseconds",
            "1234",
            "quorum",
            "1"
        ])
        .await),
        "+OK\r\n"
    );
    let m = c.cmd(&["SENTINEL", "MASTER", "m2"]).await;
    assert_eq!(m.field("down-after-milliseconds").unwrap(), "1234");
    assert_eq!(m.field("quorum").unwrap(), "1");
    c.expect_replies(&[
        (
            &["SENTINEL", "SET", "m2", "quorum", "zero"],
            "-ERR Invalid argument 'zero' for SENTINEL SET 'quorum'\r\n",
        ),
        (
            &["SENTINEL", "SET", "m2", "bogus", "1"],
            "-ERR Unknown option or number of arguments for SENTINEL SET 'bogus'\r\n",
        ),
        (
            &["SENTINEL", "SET", "nope", "quorum", "1"],
            "-ERR No such master with that name\r\n",
        ),
        (&["SENTINEL", "RESET", "m?"], ":1\r\n"),
        (&["SENTINEL", "RESET", "m*"], ":2\r\n"),
        (&["SENTINEL", "RESET", "zzz*"], ":0\r\n"),
        (&["SENTINEL", "REMOVE", "m2"], "+OK\r\n"),
        (
            &["SENTINEL", "REMOVE", "m2"],
            "-ERR No such master with that name\r\n",
        ),
        (&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m2"], "*-1\r\n"),
        (
            &["SENTINEL", "CONFIG", "SET", "resolve-hostnames", "maybe"],
            "-ERR Invalid value 'maybe' to SENTINEL CONFIG SET 'resolve-hostnames'\r\n",
        ),
        (
            &["SENTINEL", "CONFIG", "SET", "nope", "1"],
            "-ERR Invalid argument 'nope' to SENTINEL CONFIG SET\r\n",
        ),
        (
            &["SENTINEL", "CONFIG", "SET", "resolve-hostnames", "yes"],
            "+OK\r\n",
        ),
    ])
    .await;
    assert_eq!(
        s(
            &c.raw(&["SENTINEL", "MONITOR", "m3", "localhost", "7001", "1"])
                .await
        ),
        "+OK\r\n",
        "hostnames are accepted once resolve-hostnames is yes"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_in_resp2_and_resp3() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    let mut sub2 = h.client(1).await;
    assert_eq!(
        s(&sub2.raw(&["SUBSCRIBE", "+monitor", "-monitor"]).await),
        "*3\r\n$9\r\nsubscribe\r\n$8\r\n+monitor\r\n:1\r\n"
    );
    assert_eq!(
        s(&sub2.read().await.0),
        "*3\r\n$9\r\nsubscribe\r\n$8\r\n-monitor\r\n:2\r\n"
    );
    sub2.expect_replies(&[
        (&["PSUBSCRIBE", "*"], "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:3\r\n"),
        (&["PING"], "*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
        (&["SENTINEL", "MASTERS"], "-ERR Can't execute 'sentinel|masters': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"),
    ])
    .await;
    let mut sub3 = h.client(2).await;
    sub3.cmd(&["HELLO", "3"]).await;
    sub3.expect_replies(&[
        (
            &["SUBSCRIBE", "+monitor"],
            ">3\r\n$9\r\nsubscribe\r\n$8\r\n+monitor\r\n:1\r\n",
        ),
        (&["PING"], "+PONG\r\n"),
    ])
    .await;
    // RESP3 clients may run any command while subscribed.
    assert_eq!(sub3.cmd(&["SENTINEL", "MASTERS"]).await.items().len(), 1);

    let mut w = h.client(3).await;
    assert_eq!(
        s(
            &w.raw(&["SENTINEL", "MONITOR", "m2", "127.0.0.1", "7000", "2"])
                .await
        ),
        "+OK\r\n"
    );
    // Every node publishes what it applies, not only the one that took the command.
    assert_eq!(
        s(&sub2.read().await.0),
        "*3\r\n$7\r\nmessage\r\n$8\r\n+monitor\r\n$33\r\nmaster m2 127.0.0.1 7000 quorum 2\r\n"
    );
    assert_eq!(
        s(&sub2.read().await.0),
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$8\r\n+monitor\r\n$33\r\nmaster m2 127.0.0.1 7000 quorum 2\r\n"
    );
    assert_eq!(
        s(&sub3.read().await.0),
        ">3\r\n$7\r\nmessage\r\n$8\r\n+monitor\r\n$33\r\nmaster m2 127.0.0.1 7000 quorum 2\r\n"
    );
    assert_eq!(s(&w.raw(&["SENTINEL", "REMOVE", "m2"]).await), "+OK\r\n");
    assert_eq!(
        s(&sub2.read().await.0),
        "*3\r\n$7\r\nmessage\r\n$8\r\n-monitor\r\n$24\r\nmaster m2 127.0.0.1 7000\r\n"
    );
    assert_eq!(
        s(&sub2.read().await.0),
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$8\r\n-monitor\r\n$24\r\nmaster m2 127.0.0.1 7000\r\n"
    );
    // UNSUBSCRIBE without names leaves every channel, in subscription order.
    sub2.send(&["UNSUBSCRIBE"]).await;
    assert_eq!(
        s(&sub2.read().await.0),
        "*3\r\n$11\r\nunsubscribe\r\n$8\r\n+monitor\r\n:2\r\n"
    );
    assert_eq!(
        s(&sub2.read().await.0),
        "*3\r\n$11\r\nunsubscribe\r\n$8\r\n-monitor\r\n:1\r\n"
    );
    sub2.expect_replies(&[
        (
            &["PUNSUBSCRIBE"],
            "*3\r\n$12\r\npunsubscribe\r\n$1\r\n*\r\n:0\r\n",
        ),
        (
            &["UNSUBSCRIBE"],
            "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
        ),
    ])
    .await;
    sub3.expect_replies(&[
        (
            &["UNSUBSCRIBE", "+monitor"],
            ">3\r\n$11\r\nunsubscribe\r\n$8\r\n+monitor\r\n:0\r\n",
        ),
        (&["UNSUBSCRIBE"], ">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"),
    ])
    .await;
    // Out of subscribed mode, RESP2 commands work again.
    assert_eq!(sub2.cmd(&["SENTINEL", "MASTERS"]).await.items().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_gives_redis_errors() {
    let h = Harness::start(1, Some("s3cret"), RespOptions::default()).await;
    let mut c = h.client(1).await;
    c.expect_replies(&[
        (&["PING"], "-NOAUTH Authentication required.\r\n"),
        (
            &["SENTINEL", "MASTERS"],
            "-NOAUTH Authentication required.\r\n",
        ),
    ])
    .await;
    // Unknown commands and arity are checked before authentication, as in Redis.
    c.expect_replies(&[
        (&["FOO"], "-ERR unknown command 'FOO', with args beginning with: \r\n"),
        (&["HELLO", "3"], "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"),
        (&["AUTH", "bad"], "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
        (&["HELLO", "3", "AUTH", "default", "bad"], "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
        (&["AUTH", "s3cret"], "+OK\r\n"),
        (&["PING"], "+PONG\r\n"),
    ])
    .await;

    let mut d = h.client(1).await;
    let hello = d
        .cmd(&["HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "me"])
        .await;
    assert_eq!(hello.field("mode").unwrap(), "sentinel");
    assert_eq!(s(&d.raw(&["CLIENT", "GETNAME"]).await), "$2\r\nme\r\n");

    // Before AUTH, big requests are refused like Redis does.
    let mut e = h.client(1).await;
    e.send_raw(b"*1\r\n$20000\r\n").await;
    assert_eq!(
        s(&e.read().await.0),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(e.closed_within(Duration::from_secs(2)).await);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_node_never_hands_out_a_master() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    let leader = h.leader();
    let cut = (1..=3).find(|id| *id != leader).unwrap();
    h.net.isolate(cut);
    // Its lease runs out a lease after the last contact.
    let raft = &h.nodes[&cut].raft;
    support::wait_for_every(
        TICK,
        "the isolated node stops vouching",
        raft.lease() * 2,
        || (!raft.has_leader_contact()).then_some(()),
    )
    .await;
    for cmd in [
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"][..],
        &["SENTINEL", "MASTERS"][..],
        &["SENTINEL", "MASTER", "mymaster"][..],
        &["SENTINEL", "get-primary-addr-by-name", "mymaster"][..],
    ] {
        let mut c = h.client(cut).await;
        assert_eq!(
            s(&c.raw(&["PING"]).await),
            "+PONG\r\n",
            "the port itself is up"
        );
        c.send(cmd).await;
        assert!(
            c.try_read().await.is_none(),
            "{cmd:?}: the isolated node must close without an answer"
        );
    }
    // The majority side keeps answering.
    for id in (1..=3).filter(|id| *id != cut) {
        let mut c = h.client(id).await;
        assert_eq!(
            s(&c.raw(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
                .await),
            "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"
        );
    }
    h.net.heal();
    support::eventually(
        Duration::from_secs(10),
        "isolated node answers again",
        || {
            let addr = h.addr(cut).to_string();
            async move {
                let mut c = RespClient::connect(&addr).await;
                c.send(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
                    .await;
                c.try_read().await.map(|_| ())
            }
        },
    )
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_answered_and_closed() {
    let h = Harness::start(1, None, RespOptions::default()).await;
    // A 2 GB declared bulk: refused from the header, nothing allocated for it.
    let mut c = h.client(1).await;
    c.send_raw(b"*1\r\n$2147483648\r\n").await;
    assert_eq!(
        s(&c.read().await.0),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(c.closed_within(Duration::from_secs(2)).await);

    for (input, want) in [
        (
            &b"*1\r\n+PING\r\n"[..],
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n*1\r\n$4\r\nPING\r\n",
            "-ERR Protocol error: expected '$', got '*'\r\n",
        ),
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*3000000000\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"PING \"a\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut c = h.client(1).await;
        c.send_raw(input).await;
        assert_eq!(s(&c.read().await.0), want, "{:?}", s(input));
        assert!(c.closed_within(Duration::from_secs(2)).await);
    }

    // Commands before the bad one in the same packet are still answered.
    let mut c = h.client(1).await;
    c.send_raw(b"PING\r\n*1\r\n$-5\r\n").await;
    assert_eq!(s(&c.read().await.0), "+PONG\r\n");
    assert_eq!(
        s(&c.read().await.0),
        "-ERR Protocol error: invalid bulk length\r\n"
    );

    // Half frames: one byte at a time.
    let mut c = h.client(1).await;
    for b in encode(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]) {
        c.send_raw(&[b]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        s(&c.read().await.0),
        "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"
    );

    // 10 000 pipelined commands in one write: 10 000 replies, in order.
    let one = encode(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
    let mut all = Vec::new();
    for i in 0..10_000 {
        if i % 1000 == 999 {
            all.extend(encode(&["PING", &i.to_string()]));
        } else {
            all.extend(&one);
        }
    }
    let mut c = h.client(1).await;
    let (mut r, mut wr) = c.stream.split();
    let writer = async {
        tokio::io::AsyncWriteExt::write_all(&mut wr, &all)
            .await
            .unwrap();
    };
    let reader = async {
        let mut buf = Vec::new();
        let mut n = 0;
        let mut chunk = vec![0u8; 65536];
        while n < 10_000 {
            let got = tokio::io::AsyncReadExt::read(&mut r, &mut chunk)
                .await
                .unwrap();
            assert!(got > 0, "closed after {n} replies");
            buf.extend_from_slice(&chunk[..got]);
            while let Some((v, used)) = support::resp::parse_reply(&buf) {
                if n % 1000 == 999 {
                    assert_eq!(v.text().unwrap(), n.to_string());
                } else {
                    assert_eq!(v.items().len(), 2);
                }
                buf.drain(..used);
                n += 1;
            }
        }
        assert!(buf.is_empty());
    };
    tokio::join!(writer, reader);

    // Random garbage on many connections: the server stays up and keeps serving.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..50 {
        let mut c = h.client(1).await;
        let bytes: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        c.send_raw(&bytes).await;
        let _ = c.closed_within(Duration::from_millis(50)).await;
    }
    let mut c = h.client(1).await;
    assert_eq!(s(&c.raw(&["PING"]).await), "+PONG\r\n");
    h.stop().await;
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_bounded_and_dropped() {
    let opts = RespOptions {
        write_timeout: Duration::from_millis(500),
        ..RespOptions::default()
    };
    let h = Harness::start(1, None, opts).await;
    let before = rss_kib();
    let mut c = h.client(1).await;
    // 40 000 INFO requests (~100 MB of replies if they were all buffered), never read.
    let req = encode(&["INFO"]);
    let batch: Vec<u8> = req.iter().copied().cycle().take(req.len() * 1000).collect();
    let mut sent = 0;
    let write_all = async {
        for _ in 0..40 {
            if tokio::io::AsyncWriteExt::write_all(&mut c.stream, &batch)
                .await
                .is_err()
            {
                break;
            }
            sent += 1000;
        }
    };
    // Once both socket buffers are full the writer blocks too: stop after a while.
    let _ = tokio::time::timeout(Duration::from_secs(5), write_all).await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "memory grew by {grown} KiB after {sent} requests"
    );
    // The server gives up on the client after the write timeout...
    let mut closed = false;
    for _ in 0..20 {
        let mut chunk = vec![0u8; 1 << 20];
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(&mut c.stream, &mut chunk),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    assert!(closed, "a client that does not read must be disconnected");
    // ...and everyone else is served meanwhile.
    let mut d = h.client(1).await;
    assert_eq!(s(&d.raw(&["PING"]).await), "+PONG\r\n");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_client_kill_and_shutdown() {
    let opts = RespOptions {
        max_connections: 2,
        ..RespOptions::default()
    };
    let h = Harness::start(1, None, opts).await;
    let mut a = h.client(1).await;
    let mut b = h.client(1).await;
    assert_eq!(s(&a.raw(&["PING"]).await), "+PONG\r\n");
    assert_eq!(s(&b.raw(&["CLIENT", "SETNAME", "victim"]).await), "+OK\r\n");
    let mut over = h.client(1).await;
    assert_eq!(
        s(&over.read().await.0),
        "-ERR max number of clients reached\r\n"
    );
    assert!(over.closed_within(Duration::from_secs(2)).await);

    let list = a.cmd(&["CLIENT", "LIST"]).await.text().unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    let victim = list
        .lines()
        .find(|l| l.contains("name=victim"))
        .expect("victim listed");
    let id: String = victim
        .strip_prefix("id=")
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    assert_eq!(s(&a.raw(&["CLIENT", "KILL", "ID", &id]).await), ":1\r\n");
    assert!(b.closed_within(Duration::from_secs(2)).await);
    a.expect_replies(&[
        (&["CLIENT", "KILL", "ID", "99999"], ":0\r\n"),
        (&["CLIENT", "KILL", "1.2.3.4:5"], "-ERR No such client\r\n"),
    ])
    .await;
    // The killed client's slot is free again.
    let mut c = support::eventually(Duration::from_secs(2), "a free slot", || {
        let addr = h.addr(1).to_string();
        async move {
            let mut c = RespClient::connect(&addr).await;
            c.send(&["PING"]).await;
            match c.try_read().await {
                Some((raw, _)) if raw == b"+PONG\r\n" => Some(c),
                _ => None,
            }
        }
    })
    .await;

    // Graceful shutdown: idle connections are closed and serve() returns.
    let node = &h.nodes[&1];
    node.resp_stop.trigger();
    assert!(a.closed_within(Duration::from_secs(5)).await);
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let Harness { nodes, .. } = h;
    for (_, n) in nodes {
        tokio::time::timeout(Duration::from_secs(5), n.resp_task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        n.raft_stop.trigger();
        let _ = n.raft_task.await;
    }
}

/// Commits a promotion of `new` through the log, as the failover executor does.
async fn commit_switch(raft: &RaftHandle, new: &str) {
    use raft_sentinel::fsm::{Command, FailoverReason};
    let new: raft_sentinel::model::Addr = new.parse().unwrap();
    raft.propose(Command::Replicas {
        master: "mymaster".into(),
        replicas: vec![new.clone()],
    })
    .await
    .unwrap();
    let epoch = raft.state().current_epoch + 1;
    raft.propose(Command::FailoverStart {
        master: "mymaster".into(),
        epoch,
        candidate: new.clone(),
        reason: FailoverReason::Forced,
        leader: raft.node_id(),
        at_ms: 1,
    })
    .await
    .unwrap();
    raft.propose(Command::FailoverDone {
        master: "mymaster".into(),
        epoch,
        new_addr: new,
        at_ms: 2,
    })
    .await
    .unwrap();
}

/// Wire replays of the sequences the Java and .NET clients send (CLIENTS.md section 1), which
/// cannot be installed here, and what each of them parses out of the replies and events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jedis_lettuce_and_stackexchange_sequences() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    // Jedis: GET-MASTER-ADDR-BY-NAME as an active refresh, then SUBSCRIBE +switch-master.
    let mut jedis = h.client(1).await;
    assert_eq!(
        s(&jedis
            .raw(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .await),
        "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"
    );
    jedis.cmd(&["SUBSCRIBE", "+switch-master"]).await;

    // Lettuce master/replica: HELLO 3 (proto checked), PSUBSCRIBE *, SENTINEL MASTER and
    // REPLICAS as maps.
    let mut lettuce = h.client(2).await;
    let hello = lettuce.cmd(&["HELLO", "3"]).await;
    assert!(matches!(hello, Value::Map(_)));
    assert!(hello
        .pairs()
        .iter()
        .any(|(k, v)| k == "proto" && *v == Value::Int(3)));
    let psub = lettuce.cmd(&["PSUBSCRIBE", "*"]).await;
    assert!(matches!(psub, Value::Push(_)));
    let m = lettuce.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert_eq!(m.field("ip").unwrap(), "127.0.0.1");
    assert!(matches!(
        lettuce.cmd(&["SENTINEL", "REPLICAS", "mymaster"]).await,
        Value::Array(Some(_))
    ));

    // StackExchange.Redis: INFO server (redis_mode:sentinel, version >= 5 => REPLICAS),
    // SENTINEL MASTERS, then SUBSCRIBE +switch-master and +sentinel.
    let mut se = h.client(3).await;
    let info = se.cmd(&["INFO", "server"]).await.text().unwrap();
    assert!(info.contains("redis_mode:sentinel\r\n"));
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap();
    assert!(version.split('.').next().unwrap().parse::<u32>().unwrap() >= 7);
    assert_eq!(se.cmd(&["SENTINEL", "MASTERS"]).await.items().len(), 1);
    assert_eq!(
        se.cmd(&["SENTINEL", "SENTINELS", "mymaster"])
            .await
            .items()
            .len(),
        2
    );
    let mut se_sub = h.client(3).await;
    se_sub
        .send(&["SUBSCRIBE", "+switch-master", "+sentinel"])
        .await;
    se_sub.read().await;
    se_sub.read().await;

    let leader = h.leader();
    commit_switch(&h.nodes[&leader].raft, "127.0.0.1:6380").await;

    // Jedis splits on spaces: [0] name, [3]:[4] the new master.
    let (_, v) = jedis.read().await;
    let items = v.items();
    assert_eq!(items[1].text().unwrap(), "+switch-master");
    let f: Vec<String> = items[2]
        .text()
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(f, ["mymaster", "127.0.0.1", "6379", "127.0.0.1", "6380"]);

    // Lettuce refreshes on `+switch-master` starting "<name> " and on `+slave` containing
    // "@ <name> ": both arrive as pmessage push frames.
    let old_as_replica = (
        "+slave".to_string(),
        "slave 127.0.0.1:6379 127.0.0.1 6379 @ mymaster 127.0.0.1 6380".to_string(),
    );
    let mut seen: Vec<(String, String)> = Vec::new();
    while !seen.contains(&old_as_replica) {
        let (raw, v) = lettuce.read().await;
        assert_eq!(raw[0], b'>', "RESP3 push frame");
        let it = v.items();
        assert_eq!(it[0].text().unwrap(), "pmessage");
        seen.push((it[2].text().unwrap(), it[3].text().unwrap()));
    }
    assert!(seen
        .iter()
        .any(|(c, p)| c == "+switch-master" && p.starts_with("mymaster ")));
    assert!(seen
        .iter()
        .all(|(c, p)| c != "+slave" || p.contains("@ mymaster ")));

    // SE.Redis re-queries the address on +switch-master: every node answers the new one.
    let (_, v) = se_sub.read().await;
    assert_eq!(v.items()[1].text().unwrap(), "+switch-master");
    for id in 1..=3 {
        let mut c = h.client(id).await;
        support::eventually(Duration::from_secs(5), "new master everywhere", || {
            let addr = h.addr(id).to_string();
            async move {
                let mut c = RespClient::connect(&addr).await;
                let raw = c
                    .raw(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
                    .await;
                (raw == b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n").then_some(())
            }
        })
        .await;
        let m = c.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
        assert_eq!(m.field("port").unwrap(), "6380");
        assert_eq!(m.field("config-epoch").unwrap(), "1");
        let reps = c.cmd(&["SENTINEL", "REPLICAS", "mymaster"]).await.items();
        assert_eq!(reps.len(), 1);
        assert_eq!(reps[0].field("name").unwrap(), "127.0.0.1:6379");
    }
    h.stop().await;
}

/// The pre-encoded lookup path: one long-lived connection sees every applied switch at once
/// (no stale per-connection cache), pipelined lookups mixed with other commands come back in
/// order and byte-exact in both protocols, and CLIENT LIST still reports the lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_lookups_follow_every_switch_on_one_connection() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    let leader = h.leader();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let mut c = h.client(follower).await;
    let lookup = |port: &str| format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len());

    // One write holding lookups in both spellings and cases, an unknown name, a general
    // command in between, and a wrong-arity lookup (general path, Redis's error).
    let mut batch = Vec::new();
    for args in [
        &["SENTINEL", "get-master-addr-by-name", "mymaster"][..],
        &["sentinel", "GET-PRIMARY-ADDR-BY-NAME", "mymaster"],
        &["SENTINEL", "get-master-addr-by-name", "nope"],
        &["PING"],
        &["SENTINEL", "get-master-addr-by-name", "mymaster", "extra"],
        &["SENTINEL", "get-master-addr-by-name", "mymaster"],
    ] {
        batch.extend(support::resp::encode(args));
    }
    let want2 = format!(
        "{a}{a}*-1\r\n+PONG\r\n-ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command\r\n{a}",
        a = lookup("6379")
    );
    c.send_raw(&batch).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.extend(c.read().await.0);
    }
    assert_eq!(s(&got), want2);

    // CLIENT LIST reports the last command of the batch.
    let list = c.cmd(&["CLIENT", "LIST"]).await.text().unwrap();
    assert!(list.contains("cmd=client|list"), "{list}");
    c.raw(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
        .await;
    let mut other = h.client(follower).await;
    let list = other.cmd(&["CLIENT", "LIST"]).await.text().unwrap();
    assert!(
        list.contains("cmd=sentinel|get-master-addr-by-name"),
        "{list}"
    );

    // A switch committed through the log: the same connection answers the new master as soon
    // as this node applied it, in RESP2 and then in RESP3 (where unknown is `_`).
    commit_switch(&h.nodes[&leader].raft, "127.0.0.1:6380").await;
    let mut rx = h.nodes[&follower].raft.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|st| st.masters["mymaster"].addr.port == 6380),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        s(&c.raw(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .await),
        lookup("6380")
    );
    c.cmd(&["HELLO", "3"]).await;
    assert_eq!(
        s(&c.raw(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .await),
        lookup("6380")
    );
    assert_eq!(
        s(&c.raw(&["SENTINEL", "get-master-addr-by-name", "nope"])
            .await),
        "_\r\n"
    );
    commit_switch(&h.nodes[&leader].raft, "127.0.0.1:6381").await;
    support::eventually(Duration::from_secs(5), "second switch seen", || {
        let st = h.nodes[&follower].raft.state();
        async move { (st.masters["mymaster"].addr.port == 6381).then_some(()) }
    })
    .await;
    assert_eq!(
        s(&c.raw(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .await),
        lookup("6381")
    );

    // RESP2 Pub/Sub context: the lookup is refused exactly as Redis refuses it.
    let mut sub = h.client(follower).await;
    sub.cmd(&["SUBSCRIBE", "+switch-master"]).await;
    assert_eq!(
        s(&sub
            .raw(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .await),
        "-ERR Can't execute 'sentinel|get-master-addr-by-name': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_master_down_by_addr_and_simulate_failure() {
    let h = Harness::start(3, None, RespOptions::default()).await;
    let mut c = h.client(1).await;
    let q = [
        "SENTINEL",
        "IS-MASTER-DOWN-BY-ADDR",
        "127.0.0.1",
        "6379",
        "0",
        "*",
    ];
    // Up (no committed observation of node 1 says down): 0, no vote.
    assert_eq!(s(&c.raw(&q).await), "*3\r\n:0\r\n$1\r\n*\r\n:0\r\n");
    // An address nobody monitors, and a vote request (never granted: Raft elects).
    c.expect_replies(&[
        (
            &[
                "SENTINEL",
                "IS-MASTER-DOWN-BY-ADDR",
                "127.0.0.1",
                "1",
                "5",
                &"b".repeat(40),
            ],
            "*3\r\n:0\r\n$1\r\n*\r\n:0\r\n",
        ),
        (
            &[
                "SENTINEL",
                "IS-MASTER-DOWN-BY-ADDR",
                "127.0.0.1",
                "x",
                "0",
                "*",
            ],
            "-ERR value is not an integer or out of range\r\n",
        ),
    ])
    .await;
    // Node 1's committed observation says down: 1 on node 1, still 0 on node 2.
    h.nodes[&1]
        .raft
        .propose(Command::Observe {
            node: 1,
            master: "mymaster".into(),
            addr: master_spec().addr,
            down: true,
            reason: ObserveReason::NoReply,
            at_ms: raft_sentinel::clock::wall_ms(),
        })
        .await
        .expect("observation committed");
    assert_eq!(s(&c.raw(&q).await), "*3\r\n:1\r\n$1\r\n*\r\n:0\r\n");
    support::eventually(Duration::from_secs(5), "node 2 applied it", || {
        let addr = h.addr(2).to_string();
        async move {
            let mut o = RespClient::connect(&addr).await;
            let raw = o.raw(&q).await;
            (s(&raw) == "*3\r\n:0\r\n$1\r\n*\r\n:0\r\n").then_some(())
        }
    })
    .await;

    c.expect_replies(&[
        (
            &["SENTINEL", "SIMULATE-FAILURE", "help"],
            "*2\r\n$20\r\ncrash-after-election\r\n$21\r\ncrash-after-promotion\r\n",
        ),
        (
            &["SENTINEL", "SIMULATE-FAILURE", "bogus"],
            "-ERR Unknown failure simulation specified\r\n",
        ),
    ])
    .await;
    let refused = s(&c
        .raw(&["SENTINEL", "SIMULATE-FAILURE", "crash-after-election"])
        .await);
    assert!(
        refused.starts_with("-ERR SIMULATE-FAILURE is not supported"),
        "{refused}"
    );
    assert_eq!(s(&c.raw(&["SENTINEL", "FLUSHCONFIG"]).await), "+OK\r\n");
    h.stop().await;
}
