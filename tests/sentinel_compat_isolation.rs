//! Real Sentinel clients against a cluster with one coordinator cut off from the other two
//! (network namespaces, root needed).
//!
//! Lab: hosts 0-2 run the nodes, host 3 runs the clients and the replica, host 4 the master.
//! One node is partitioned from the other two (blackhole routes: clients still reach it),
//! then the master is killed and the majority fails over to the replica. The partitioned
//! node's view is now stale. To make a stale answer visible, a fresh, writable Redis is
//! started at the old master's address, where only the partitioned node (and the clients)
//! can see it: a client that was handed the stale address would write there. The partitioned
//! node is first in every client's sentinel list, so every client asks it first.
//!
//! Checked: the partitioned node never hands out an address (its stale guard closes the
//! connection), every client (redis-py sync/async RESP2/RESP3, ioredis, node-redis, the
//! redis crate's Sentinel and SentinelClient, redis-cli) writes to the new master only, the
//! impostor at the old address receives nothing, and once healed the node answers the new
//! master.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::netns::{self, NetLab};
use support::wait_for;
use support::BIN;
use tokio::time::Instant;

const CLIENT: usize = 3;
const OLD: usize = 4;
const SENTINEL_PORT: u16 = 26379;

/// A Redis on `ip:6379` whose files (the RDB a replica receives) stay in `dir`.
fn redis_args(ip: &str, replica_of: Option<&str>, dir: &Path) -> Vec<String> {
    match replica_of.and_then(|m| m.rsplit_once(':')) {
        Some((h, p)) => netns::redis_args(ip, 6379, dir, &["--replicaof", h, p]),
        None => netns::redis_args(ip, 6379, dir, &[]),
    }
}

/// `redis-cli` on the client host; returns stdout followed by stderr (where it reports a
/// closed connection).
fn cli(lab: &NetLab, addr: &str, args: &[&str]) -> String {
    let (h, p) = addr.rsplit_once(':').unwrap();
    let out = lab
        .command(CLIENT, "redis-cli")
        .args(["-h", h, "-p", p])
        .args(args)
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// The master address a sentinel hands out (`host:port`), or None when it gives none.
fn lookup(lab: &NetLab, sentinel: &str) -> Option<String> {
    let out = cli(
        lab,
        sentinel,
        &["SENTINEL", "get-master-addr-by-name", "mymaster"],
    );
    let l: Vec<&str> = out.lines().collect();
    (l.len() == 2 && l[1].parse::<u16>().is_ok()).then(|| format!("{}:{}", l[0], l[1]))
}

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// The partitioned node gives no master address by any of the discovery commands: the
/// connection closes instead of an answer.
fn assert_refuses(lab: &NetLab, sentinel: &str, stale: &str) {
    let (ip, _) = stale.rsplit_once(':').unwrap();
    for args in [
        &["SENTINEL", "get-master-addr-by-name", "mymaster"][..],
        &["SENTINEL", "MASTER", "mymaster"],
        &["SENTINEL", "MASTERS"],
    ] {
        let out = cli(lab, sentinel, args);
        assert!(
            !out.contains(ip),
            "the partitioned node handed out the stale master for {args:?}: {out}"
        );
        assert!(
            out.contains("closed"),
            "{args:?}: expected a closed connection, got {out:?}"
        );
    }
}

/// Runs a client script on the client host until it made 5 writes; returns its `MASTER`
/// lines after checking it succeeded.
fn run_script(lab: &NetLab, program: &str, args: &[String]) -> Vec<String> {
    let out = lab
        .command(CLIENT, program)
        .args(args)
        .env("COMPAT_WRITES", "5")
        .current_dir(compat_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("[{} {}]\n{stdout}", program, args[0]);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("MASTER "))
        .map(str::to_string)
        .collect()
}

/// The redis crate's sync `Sentinel` and `SentinelClient`, on a thread in the client host's
/// namespace: five writes each; returns the master addresses it connected to.
fn redis_rs(lab: &NetLab, urls: Vec<String>, protocol: redis::ProtocolVersion) -> Vec<String> {
    lab.run_in(CLIENT, move || {
        use redis::sentinel::{
            Sentinel, SentinelClient, SentinelNodeConnectionInfo, SentinelServerType,
        };
        let info = SentinelNodeConnectionInfo::default().set_redis_connection_info(
            redis::RedisConnectionInfo::default().set_protocol(protocol),
        );
        let mut seen = Vec::new();
        let mut s = Sentinel::build(urls.clone()).unwrap();
        let mut sc = SentinelClient::build(
            urls,
            "mymaster",
            Some(info.clone()),
            SentinelServerType::Master,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ok = 0;
        while ok < 5 {
            assert!(Instant::now() < deadline, "redis-rs made no progress");
            let r: redis::RedisResult<String> = (|| {
                let c = s.master_for("mymaster", Some(&info))?;
                let addr = match c.get_connection_info().addr() {
                    redis::ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
                    other => panic!("unexpected address {other:?}"),
                };
                let mut con = c.get_connection()?;
                redis::cmd("SET")
                    .arg("compat:redis-rs")
                    .arg(ok)
                    .exec(&mut con)?;
                let mut con = sc.get_connection()?;
                redis::cmd("SET")
                    .arg("compat:redis-rs:client")
                    .arg(ok)
                    .exec(&mut con)?;
                Ok(addr)
            })();
            match r {
                Ok(addr) => {
                    seen.push(addr);
                    ok += 1;
                }
                Err(e) => {
                    eprintln!("[redis-rs] {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        seen
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_the_new_master_while_one_node_is_partitioned() {
    assert!(
        NetLab::available(),
        "this test needs network namespaces (run the test suite as root)"
    );
    let python = compat_dir().join(".venv/bin/python");
    assert!(
        python.exists() && compat_dir().join("node_modules/redis").exists(),
        "client libraries are not installed: tests/compat/install.sh"
    );
    let python = python.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut lab = NetLab::new(5);
    let old = format!("{}:6379", lab.hosts[OLD].ip);
    let new = format!("{}:6379", lab.hosts[CLIENT].ip);
    let master_idx = lab.spawn(
        OLD,
        "redis-server",
        &redis_args(&lab.hosts[OLD].ip, None, &dir.path().join("old")),
        &dir.path().join("old.log"),
    );
    lab.spawn(
        CLIENT,
        "redis-server",
        &redis_args(&lab.hosts[CLIENT].ip, Some(&old), &dir.path().join("new")),
        &dir.path().join("new.log"),
    );
    for i in 0..3 {
        let announce = format!("announce_ip = \"{}\"\n", lab.hosts[i].ip);
        let cfg = lab.node_config(
            i,
            dir.path(),
            &old,
            &announce,
            "failover_timeout_ms = 10000\n",
        );
        lab.spawn(
            i,
            BIN,
            &["run".into(), "--config".into(), cfg.display().to_string()],
            &dir.path().join(format!("node{}.log", i + 1)),
        );
    }
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let sentinel = |i: usize| format!("{}:{SENTINEL_PORT}", ips[i]);
    for i in 0..3 {
        wait_for(
            "every node serves the master",
            Duration::from_secs(30),
            || (lookup(&lab, &sentinel(i)).as_deref() == Some(old.as_str())).then_some(()),
        )
        .await;
    }
    // The replica must be known (and in sync) before the master can fail over to it.
    wait_for("the replica is known", Duration::from_secs(30), || {
        let out = cli(&lab, &sentinel(0), &["SENTINEL", "REPLICAS", "mymaster"]);
        (out.contains(&lab.hosts[CLIENT].ip) && out.lines().any(|l| l == "ok")).then_some(())
    })
    .await;

    // Partition node x (host 0) from the other two; clients still reach it.
    let x = 0;
    let majority = [1, 2];
    for j in majority {
        lab.cut(x, j);
    }
    wait_for(
        "the partitioned node's stale guard",
        Duration::from_secs(10),
        || lookup(&lab, &sentinel(x)).is_none().then_some(()),
    )
    .await;

    // Fail the master over in the majority.
    lab.kill(master_idx);
    for i in majority {
        wait_for(
            "the majority answers the promoted replica",
            Duration::from_secs(40),
            || (lookup(&lab, &sentinel(i)).as_deref() == Some(new.as_str())).then_some(()),
        )
        .await;
    }
    // An impostor at the old address that only the partitioned node and the clients see: a
    // writable, empty master, exactly what a stale answer would send clients to.
    for i in majority {
        lab.cut(i, OLD);
    }
    lab.spawn(
        OLD,
        "redis-server",
        &redis_args(&lab.hosts[OLD].ip, None, &dir.path().join("impostor")),
        &dir.path().join("impostor.log"),
    );
    wait_for("the impostor is up", Duration::from_secs(10), || {
        (cli(&lab, &old, &["PING"]).trim() == "PONG").then_some(())
    })
    .await;
    // The partitioned node still believes the old master (its view is stale) and says nothing.
    let (code, out, err) = lab.ctl(
        x,
        &[
            "--endpoint",
            "127.0.0.1:7700",
            "get-master",
            "mymaster",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&lab.hosts[OLD].ip),
        "the partitioned node's view is stale: {out}"
    );
    assert_refuses(&lab, &sentinel(x), &old);

    // Every client, with the partitioned node first in its list.
    let list = [x, 1, 2].map(sentinel).join(",");
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for (mode, proto) in [("sync", "3"), ("async", "3"), ("sync", "2"), ("async", "2")] {
        let args = vec![
            "redis_py.py".to_string(),
            list.clone(),
            "mymaster".into(),
            mode.into(),
            proto.into(),
            "60".into(),
        ];
        runs.push((
            format!("redis-py {mode} RESP{proto}"),
            run_script(&lab, &python, &args),
        ));
    }
    for variant in ["", "detector"] {
        let mut args = vec![
            "ioredis.js".to_string(),
            list.clone(),
            "mymaster".into(),
            "60".into(),
        ];
        if !variant.is_empty() {
            args.push(variant.into());
        }
        runs.push((
            format!("ioredis {variant}"),
            run_script(&lab, "node", &args),
        ));
    }
    let args = vec![
        "node_redis.js".to_string(),
        list.clone(),
        "mymaster".into(),
        "60".into(),
    ];
    runs.push(("node-redis".into(), run_script(&lab, "node", &args)));
    for (proto, q) in [
        (redis::ProtocolVersion::RESP2, "resp2"),
        (redis::ProtocolVersion::RESP3, "resp3"),
    ] {
        let urls = [x, 1, 2]
            .map(|i| format!("redis://{}/?protocol={q}", sentinel(i)))
            .to_vec();
        runs.push((format!("redis-rs {q}"), redis_rs(&lab, urls, proto)));
    }
    // redis-cli the way scripts use it: the first sentinel that answers.
    let via_cli = [x, 1, 2]
        .iter()
        .find_map(|&i| lookup(&lab, &sentinel(i)))
        .expect("some sentinel answers");
    assert_eq!(
        cli(&lab, &via_cli, &["SET", "compat:cli", "1"]).trim(),
        "OK"
    );
    runs.push(("redis-cli".into(), vec![via_cli]));

    for (client, masters) in &runs {
        assert!(!masters.is_empty(), "{client} wrote nothing");
        assert!(
            masters.iter().all(|m| *m == new),
            "{client} used {masters:?}; only {new} is the master"
        );
    }
    // Nothing reached the impostor; everything reached the new master.
    assert_eq!(
        cli(&lab, &old, &["DBSIZE"]).trim(),
        "0",
        "a client wrote to the stale address"
    );
    for key in [
        "compat:py",
        "compat:ioredis",
        "compat:node-redis",
        "compat:redis-rs",
        "compat:redis-rs:client",
        "compat:cli",
    ] {
        assert_eq!(
            cli(&lab, &new, &["EXISTS", key]).trim(),
            "1",
            "{key} on the new master"
        );
    }
    assert_refuses(&lab, &sentinel(x), &old);

    // Healed, the node catches up and answers the new master.
    for j in majority {
        lab.uncut(x, j);
    }
    wait_for(
        "the healed node answers the new master",
        Duration::from_secs(30),
        || (lookup(&lab, &sentinel(x)).as_deref() == Some(new.as_str())).then_some(()),
    )
    .await;
}
