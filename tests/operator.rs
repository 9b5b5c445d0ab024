//! What operators' automation does to a cluster of real `raft-sentinel run` processes: setup
//! commands sent to every node right after start, and writes while leadership moves.

mod support;

use std::time::Duration;

use support::resp::{RespClient, Value};
use support::{eventually, free_port, Cluster, ClusterOpts};
use tokio::net::TcpStream;

/// Connects as soon as the node's Sentinel port accepts connections.
async fn connect_when_up(addr: &str) -> RespClient {
    eventually(
        Duration::from_secs(10),
        "the Sentinel port accepts",
        || async { TcpStream::connect(addr).await.ok().map(|_| ()) },
    )
    .await;
    RespClient::connect(addr).await
}

fn ok(v: &Value) -> bool {
    v.text().as_deref() == Some("OK")
}

/// Production Raft timing (100 ms ticks, 10 election ticks): 2 × election timeout = 2 s.
fn opts() -> ClusterOpts {
    ClusterOpts {
        tick_ms: 100,
        election_ticks: 10,
        heartbeat_ticks: 2,
        ..ClusterOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_sent_to_every_node_right_after_start_succeeds_everywhere() {
    let cluster = Cluster::start(opts());
    let port = free_port().to_string();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.sentinel_addr()).collect();
    // What a configuration script does: the same setup on every sentinel, as soon as it is up.
    let tasks: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            let port = port.clone();
            tokio::spawn(async move {
                let mut c = connect_when_up(&addr).await;
                let mut replies = Vec::new();
                for cmd in [
                    vec!["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "2"],
                    vec![
                        "SENTINEL",
                        "SET",
                        "mymaster",
                        "down-after-milliseconds",
                        "5000",
                    ],
                    vec!["SENTINEL", "SET", "mymaster", "failover-timeout", "60000"],
                    vec!["SENTINEL", "SET", "mymaster", "auth-pass", "secret"],
                    vec!["SENTINEL", "SET", "mymaster", "parallel-syncs", "1"],
                ] {
                    let v = c.cmd(&cmd).await;
                    replies.push((cmd.join(" "), v));
                }
                (addr, replies)
            })
        })
        .collect();
    for t in tasks {
        let (addr, replies) = t.await.expect("task");
        for (cmd, v) in replies {
            assert!(ok(&v), "{addr}: `{cmd}` answered {v:?}");
        }
    }
    // A MONITOR that disagrees with the existing master still gets Sentinel's error.
    let mut c = RespClient::connect(&cluster.nodes[0].sentinel_addr()).await;
    let other = free_port().to_string();
    let raw = c
        .raw(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &other, "2"])
        .await;
    assert_eq!(raw, b"-ERR Duplicate master name.\r\n");
    let raw = c
        .raw(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "3"])
        .await;
    assert_eq!(raw, b"-ERR Duplicate master name.\r\n");
    // The identical one is still +OK after the fact.
    let raw = c
        .raw(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "2"])
        .await;
    assert_eq!(raw, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_keep_answering_ok_while_leadership_moves() {
    let cluster = Cluster::start(opts());
    let first = cluster.wait_leader(Duration::from_secs(10)).await;
    let port = free_port().to_string();
    let mut c = RespClient::connect(&cluster.node(first).sentinel_addr()).await;
    let v = c
        .cmd(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "2"])
        .await;
    assert!(ok(&v), "MONITOR answered {v:?}");

    // One writer per node, each sending SETs in a loop until the transfers are done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let writers: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| {
            let addr = n.sentinel_addr();
            let stop = stop.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut c = RespClient::connect(&addr).await;
                let mut sent = 0u32;
                let mut bad = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let val = (5000 + i).to_string();
                    let v = c
                        .cmd(&[
                            "SENTINEL",
                            "SET",
                            "mymaster",
                            "down-after-milliseconds",
                            &val,
                        ])
                        .await;
                    sent += 1;
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if !ok(&v) {
                        bad.push(format!("SET #{i} via {addr}: {v:?}"));
                    }
                }
                (sent, bad)
            })
        })
        .collect();

    // Every leader, the first and each new one, answers some SETs before it moves on.
    let some_sets_answered = || {
        let from = answered.load(std::sync::atomic::Ordering::SeqCst);
        let answered = answered.clone();
        eventually(Duration::from_secs(10), "SETs answered", move || {
            let answered = answered.clone();
            async move {
                (answered.load(std::sync::atomic::Ordering::SeqCst) >= from + 10).then_some(())
            }
        })
    };
    let mut leader = first;
    for round in 0..3 {
        some_sets_answered().await;
        let to = cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|&id| id != leader)
            .expect("another node");
        let (code, out, err) = cluster.ctl(&["transfer-leader", "--to", &to.to_string()]);
        assert_eq!(code, 0, "transfer {round} to {to}: {out} {err}");
        leader = eventually(
            Duration::from_secs(10),
            "the new leader is known",
            || async {
                let st = cluster.node(to).status().await?;
                (st.leader_id == to).then_some(to)
            },
        )
        .await;
    }
    some_sets_answered().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for w in writers {
        let (sent, bad) = w.await.expect("writer");
        total += sent;
        assert!(bad.is_empty(), "SETs that did not answer OK: {bad:#?}");
    }
    assert!(
        total >= 30,
        "only {total} SETs were sent during the transfers"
    );
}

/// `n` consecutive free ports (the demo numbers its ports from a base).
fn port_block(n: u16) -> u16 {
    loop {
        let base = free_port();
        if (1..n).all(|i| free_port() == base + i) {
            return base;
        }
    }
}

/// Runs one command the demo printed; returns what it wrote (stdout and stderr).
fn run_printed(line: &str) -> String {
    let mut argv: Vec<&str> = line.split_whitespace().collect();
    if argv[0] == "raft-sentinel" {
        argv[0] = support::BIN;
    }
    let blocking = line.contains("SUBSCRIBE") || line.contains("DEBUG SLEEP");
    let mut child = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run `{line}`: {e}"));
    if blocking {
        // These wait by design (a sleep, a subscription): they must still be waiting, not
        // refused, after a while.
        std::thread::sleep(Duration::from_millis(1500));
        let exited = child.try_wait().expect("try_wait");
        let (_, text) = kill_and_read(child);
        assert!(exited.is_none(), "`{line}` ended at once: {text}");
        return text;
    }
    let hung = exit_within(&mut child, 300).is_none();
    let (status, text) = kill_and_read(child);
    assert!(!hung, "`{line}` got no answer within 15 s: {text}");
    assert!(status.success(), "`{line}` failed: {text}");
    text
}

/// Polls `child` every 50 ms, `tries` times, for its exit.
fn exit_within(child: &mut std::process::Child, tries: u32) -> Option<std::process::ExitStatus> {
    for _ in 0..tries {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.try_wait().expect("try_wait")
}

/// Kills `child` (if still running) and returns its exit status and its stdout and stderr.
fn kill_and_read(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// The demo process: stopped like Ctrl-C (so it stops its Redis servers) even when the test
/// fails, and killed if that does not work.
struct Demo(std::process::Child);

impl Demo {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        support::signal(self.0.id(), "-TERM");
        if let Some(st) = exit_within(&mut self.0, 400) {
            return Some(st);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_the_demo_prints_works() {
    use parking_lot::Mutex;
    use std::io::BufRead;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir = dir.path().join("demo");
    let redis = port_block(3);
    let sentinel = port_block(3);
    let grpc = port_block(23);
    let stderr_path = dir.path().join("terminal-stderr");
    let mut demo = Demo(
        std::process::Command::new(support::BIN)
            .args(["demo", "--redis-port", &redis.to_string()])
            .args(["--sentinel-port", &sentinel.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--dir", &demo_dir.display().to_string()])
            .env_remove("RAFT_SENTINEL_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("start the demo"),
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = demo.0.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                lines.lock().push(l);
            }
        })
    };
    let has = |needle: &'static str| {
        let lines = lines.clone();
        move || {
            let found = lines.lock().iter().any(|l| l.contains(needle));
            async move { found.then_some(()) }
        }
    };
    eventually(
        Duration::from_secs(60),
        "the demo prints its instructions",
        has("Press Ctrl-C"),
    )
    .await;
    let printed: Vec<String> = lines
        .lock()
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("redis-cli") || l.starts_with("raft-sentinel ctl"))
        // Drop the annotation after a run of spaces, e.g. "(or kill the master's ...)".
        .map(|l| l.split("  ").next().unwrap_or(l).to_string())
        .collect();
    assert!(printed.len() >= 6, "commands printed: {printed:#?}");
    for line in &printed {
        let out = tokio::task::block_in_place(|| run_printed(line));
        assert!(
            !out.contains("ERR") && !out.contains("(error)"),
            "`{line}` answered an error: {out}"
        );
        if line.contains("get-master-addr-by-name") {
            assert!(out.contains("127.0.0.1"), "`{line}`: {out}");
        }
        if line.contains("SENTINEL failover") {
            assert!(out.trim() == "OK", "`{line}`: {out}");
            // The switch shows up as one readable line on the demo's terminal.
            eventually(
                Duration::from_secs(30),
                "the demo prints the committed +switch-master",
                has("+switch-master   clients now get the new master"),
            )
            .await;
        }
        if line.contains("SUBSCRIBE") {
            assert!(out.contains("+switch-master"), "`{line}`: {out}");
        }
    }
    let shown = lines.lock().clone();
    let switch = shown
        .iter()
        .find(|l| l.contains("+switch-master   "))
        .expect("a +switch-master line");
    assert!(
        switch.contains("clients now get the new master: mymaster 127.0.0.1"),
        "{switch}"
    );

    let status = tokio::task::block_in_place(|| demo.stop()).expect("the demo stops on SIGTERM");
    reader.join().expect("reader");
    assert!(status.success(), "the demo exited with {status}");
    // The terminal only gets warnings; the full log is in the demo's directory.
    let terminal = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        !terminal.contains("Z  INFO "),
        "info lines on the terminal:\n{terminal}"
    );
    let full = std::fs::read_to_string(demo_dir.join("demo.log")).expect("demo.log");
    assert!(full.contains("Z  INFO "), "demo.log has no info lines");
    for port in [redis, redis + 1, redis + 2] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the demo left redis-server on {port} running"
        );
    }
}
