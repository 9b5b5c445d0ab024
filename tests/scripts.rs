//! `client-reconfig-script` and `notification-script` with real processes: a master kill, the
//! shipped HAProxy map script run once per switch on every node (one `leader`, the others
//! `observer`), not again after a node restart; `SENTINEL SET` of script paths.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::resp::RespClient;
use support::{eventually, wait_monitored, Cluster, ClusterOpts, RedisProcess};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DENIED: &str = "Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration";

fn executable(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The master address `addr` answers, or None while that node is not answering yet (a node
/// still starting may accept and close a connection).
async fn master_addr(addr: &str) -> Option<String> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut s = RespClient::connect(addr).await;
    s.send(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
        .await;
    let items = s.try_read().await?.1.items();
    Some(format!(
        "{}:{}",
        items.first()?.text()?,
        items.get(1)?.text()?
    ))
}

fn expect_error(v: &support::resp::Value, text: &str) {
    assert_eq!(v, &support::resp::Value::Error(format!("ERR {text}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_script_runs_once_per_switch_on_every_node_and_not_after_restart() {
    let _g = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // The shipped example, configured by the file beside it.
    let script: PathBuf = dir.path().join("haproxy-map-reconfig.sh");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/scripts/haproxy-map-reconfig.sh"
        ),
        &script,
    )
    .unwrap();
    let map = dir.path().join("masters.map");
    let log = dir.path().join("reconfig.log");
    std::fs::write(
        dir.path().join("haproxy-map-reconfig.conf"),
        format!("MAP_FILE={}\nLOG_FILE={}\n", map.display(), log.display()),
    )
    .unwrap();
    let notes = dir.path().join("notes.log");
    let notify = dir.path().join("notify.sh");
    executable(
        &notify,
        &format!(
            "#!/bin/sh\n[ -z \"$HOME$USER\" ] || exit 2\necho \"$1|$2\" >> {}\n",
            notes.display()
        ),
    );

    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    let mut m = m;
    let toml = format!(
        "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = 500\nfailover_timeout_ms = 5000\nclient_reconfig_script = \"{}\"\nnotification_script = \"{}\"\n",
        m.addr(),
        script.display(),
        notify.display()
    );
    let mut c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        extra_toml: toml,
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    for id in 1..=3 {
        let addr = c.node(id).sentinel_addr();
        eventually(Duration::from_secs(20), "node answers", || async {
            master_addr(&addr).await
        })
        .await;
    }
    let mut s1 = RespClient::connect(&c.node(1).sentinel_addr()).await;
    // Every node monitors the replica before the master dies.
    wait_monitored(&c, "mymaster", 1).await;
    let master = s1.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert_eq!(
        master.field("client-reconfig-script").as_deref(),
        Some(script.to_str().unwrap())
    );
    // deny_scripts_reconfig defaults to true.
    let v = s1
        .cmd(&[
            "SENTINEL",
            "SET",
            "mymaster",
            "client-reconfig-script",
            "/bin/true",
        ])
        .await;
    expect_error(&v, DENIED);

    m.kill9();
    let new = r1.addr();
    for id in 1..=3 {
        let addr = c.node(id).sentinel_addr();
        eventually(Duration::from_secs(15), "node switched", || async {
            (master_addr(&addr).await? == new).then_some(())
        })
        .await;
    }
    let got = eventually(Duration::from_secs(10), "three script runs", || async {
        let l = lines(&log);
        (l.len() >= 3).then_some(l)
    })
    .await;
    // Late extra runs would show up here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got2 = lines(&log);
    assert_eq!(got, got2, "no further runs");
    let (ip, port) = new.split_once(':').unwrap();
    let (oip, oport) = m
        .addr()
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    let tail = |role: &str| format!("mymaster {role} start {oip} {oport} {ip} {port}");
    let leaders = got.iter().filter(|l| l.ends_with(&tail("leader"))).count();
    let observers = got
        .iter()
        .filter(|l| l.ends_with(&tail("observer")))
        .count();
    assert_eq!((leaders, observers), (1, 2), "runs: {got:#?}");
    assert_eq!(lines(&map), vec![format!("mymaster {new}")]);
    // The notification script got the warning-level events, with an empty environment.
    let n = lines(&notes);
    assert_eq!(
        n.iter()
            .filter(|l| l.starts_with("+switch-master|mymaster "))
            .count(),
        3,
        "{n:#?}"
    );
    assert!(
        n.iter().any(|l| l.starts_with("+odown|master mymaster")),
        "{n:#?}"
    );
    assert!(
        !n.iter().any(|l| l.starts_with("+slave|")),
        "notice-level events are not passed: {n:#?}"
    );
    let pending = s1.cmd(&["SENTINEL", "PENDING-SCRIPTS"]).await;
    assert!(pending.items().is_empty(), "{pending:?}");

    // Restarts (the log replays, the state is recovered) do not run it again.
    for id in [1, 2] {
        // A crash: whatever was not yet saved is applied again at start.
        c.node_mut(id).kill9();
        c.node_mut(id).spawn();
        let addr = c.node(id).sentinel_addr();
        eventually(
            Duration::from_secs(15),
            "restarted node answers",
            || async { (master_addr(&addr).await? == new).then_some(()) },
        )
        .await;
    }
    // A negative window: a replayed run would show up within it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lines(&log), got, "a restart ran the script again");
    drop(r1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_scripts_when_allowed() {
    let _g = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.sh");
    executable(&ok, "#!/bin/sh\nexit 0\n");
    let not_exec = dir.path().join("plain.sh");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let m = RedisProcess::start(&[]);
    let c = Cluster::start(ClusterOpts {
        nodes: 1,
        tick_ms: 20,
        top_toml: "deny_scripts_reconfig = false\n".into(),
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 1\n",
            m.addr()
        ),
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    let addr = c.node(1).sentinel_addr();
    eventually(Duration::from_secs(10), "master monitored", || async {
        master_addr(&addr).await
    })
    .await;
    let mut s = RespClient::connect(&addr).await;
    for (key, path, err) in [
        (
            "notification-script",
            not_exec.to_str().unwrap(),
            "Notification script seems non existing or non executable",
        ),
        (
            "client-reconfig-script",
            "/nonexistent/x",
            "Client reconfiguration script seems non existing or non executable",
        ),
    ] {
        let v = s.cmd(&["SENTINEL", "SET", "mymaster", key, path]).await;
        expect_error(&v, err);
    }
    let v = s
        .cmd(&[
            "SENTINEL",
            "SET",
            "mymaster",
            "client-reconfig-script",
            ok.to_str().unwrap(),
        ])
        .await;
    assert_eq!(v.text().as_deref(), Some("OK"), "{v:?}");
    let master = s.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert_eq!(
        master.field("client-reconfig-script").as_deref(),
        Some(ok.to_str().unwrap())
    );
    // Empty clears it.
    let v = s
        .cmd(&["SENTINEL", "SET", "mymaster", "client-reconfig-script", ""])
        .await;
    assert_eq!(v.text().as_deref(), Some("OK"), "{v:?}");
    let master = s.cmd(&["SENTINEL", "MASTER", "mymaster"]).await;
    assert_eq!(master.field("client-reconfig-script"), None);

    // SENTINEL DEBUG: node-local timing knobs.
    let v = s.cmd(&["SENTINEL", "DEBUG"]).await;
    assert_eq!(v.field("SCRIPT-MAX-RUNTIME").as_deref(), Some("60000"));
    assert_eq!(v.field("SCRIPT-RETRY-DELAY").as_deref(), Some("30000"));
    let v = s
        .cmd(&[
            "SENTINEL",
            "DEBUG",
            "script-max-runtime",
            "1500",
            "DEFAULT-DOWN-AFTER",
            "1234",
        ])
        .await;
    assert_eq!(v.text().as_deref(), Some("OK"), "{v:?}");
    let v = s.cmd(&["SENTINEL", "DEBUG"]).await;
    assert_eq!(v.field("SCRIPT-MAX-RUNTIME").as_deref(), Some("1500"));
    assert_eq!(v.field("DEFAULT-DOWN-AFTER").as_deref(), Some("1234"));
    let v = s.cmd(&["SENTINEL", "DEBUG", "no-such-param", "1"]).await;
    expect_error(
        &v,
        "Unknown option or number of arguments for SENTINEL DEBUG 'no-such-param'",
    );
    let v = s
        .cmd(&["SENTINEL", "DEBUG", "script-retry-delay", "0"])
        .await;
    expect_error(
        &v,
        "Invalid argument '0' for SENTINEL DEBUG 'script-retry-delay'",
    );
    // The default applies to masters MONITOR adds on this node.
    let v = s
        .cmd(&["SENTINEL", "MONITOR", "other", "127.0.0.1", "1", "1"])
        .await;
    assert_eq!(v.text().as_deref(), Some("OK"), "{v:?}");
    let v = s.cmd(&["SENTINEL", "MASTER", "other"]).await;
    assert_eq!(v.field("down-after-milliseconds").as_deref(), Some("1234"));
}

/// Reads one HTTP request (headers and a Content-Length body).
async fn read_request(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "request cut short: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            return (head, buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_posts_signed_events_and_retries() {
    use tokio::io::AsyncWriteExt;
    let _g = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, "hook-secret\n").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let m = RedisProcess::start(&[]);
    let c = Cluster::start(ClusterOpts {
        nodes: 1,
        tick_ms: 20,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 1\n\n[[webhooks]]\nurl = \"http://127.0.0.1:{port}/hooks/sentinel\"\nsecret_file = \"{}\"\n",
            m.addr(),
            secret_file.display()
        ),
        ..ClusterOpts::default()
    });
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"hook-secret");
    let mut seen = Vec::new();
    let mut refused_once = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen
        .iter()
        .any(|(e, _): &(String, serde_json::Value)| e == "+monitor")
    {
        let (mut s, _) = tokio::time::timeout_at(deadline, listener.accept())
            .await
            .expect("a webhook request")
            .unwrap();
        let (head, body) = read_request(&mut s).await;
        assert!(
            head.starts_with("POST /hooks/sentinel HTTP/1.1\r\n"),
            "{head}"
        );
        let sig = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Raft-Sentinel-Signature: sha256="))
            .expect("signature header")
            .to_string();
        let tag: Vec<u8> = (0..sig.len() / 2)
            .map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, &body, &tag).expect("HMAC-SHA256 of the body with the secret");
        if !refused_once {
            // The first delivery fails: the same event must come again.
            refused_once = true;
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            let (mut s2, _) = tokio::time::timeout_at(deadline, listener.accept())
                .await
                .expect("a retry")
                .unwrap();
            let (_, again) = read_request(&mut s2).await;
            assert_eq!(again, body, "the retry carries the same event");
            s = s2;
        }
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        seen.push((v["event"].as_str().unwrap().to_string(), v));
    }
    let (_, monitor) = seen.iter().find(|(e, _)| e == "+monitor").unwrap();
    assert_eq!(monitor["master"], "mymaster");
    assert_eq!(monitor["node_id"], 1);
    assert_eq!(
        monitor["payload"],
        format!("master mymaster {} quorum 1", m.addr().replace(':', " "))
    );
    assert!(monitor["index"].as_u64().unwrap() > 0);
    drop(c);
}
