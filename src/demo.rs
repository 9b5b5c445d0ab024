//! `raft-sentinel demo`: a complete local setup in one command. Starts a Redis master and two
//! replicas (`redis-server` from PATH) and three coordinator nodes on loopback, prints how to
//! use them, and stops everything on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use raft_sentinel::app::Node;
use raft_sentinel::clock::wall_ms;
use raft_sentinel::config::{Config, Overrides};
use raft_sentinel::consensus::AppliedEvent;
use raft_sentinel::fsm::Event;
use tokio::sync::broadcast;
use tracing::Instrument;

/// Arguments of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Port of the Redis master; the replicas take the next two.
    #[arg(long, default_value_t = 16379)]
    redis_port: u16,
    /// Sentinel port of node 1; nodes 2 and 3 take the next two.
    #[arg(long, default_value_t = 26379)]
    sentinel_port: u16,
    /// gRPC port of node 1; nodes 2 and 3 add 10 and 20 (peer ports are gRPC + 1).
    #[arg(long, default_value_t = 7700)]
    grpc_port: u16,
    /// Failure detection threshold for the demo master (ms).
    #[arg(long, default_value_t = 1000)]
    down_after_ms: u64,
    /// Directory for Redis and node data (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Redis processes started by the demo; killed by pid on drop.
struct RedisSet(Vec<Child>);

impl Drop for RedisSet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_redis(dir: &Path, port: u16, replica_of: Option<u16>) -> anyhow::Result<Child> {
    let rdir = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&rdir)?;
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        // Redis 7 refuses DEBUG (the demo's DEBUG SLEEP) unless enabled; local connections only.
        "--enable-debug-command",
        "local",
    ])
    .args(["--dir", &rdir.display().to_string()])
    .args(["--logfile", &rdir.join("redis.log").display().to_string()])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(m) = replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
    }
    let child = cmd
        .spawn()
        .context("cannot start redis-server: install it (apt-get install redis-server)")?;
    // Up to 10 s in 20 ms steps.
    let mut tries = 0;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tries += 1;
        if tries > 500 {
            bail!("redis-server on port {port} did not start (is the port in use?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

fn node_config(a: &DemoArgs, dir: &Path, id: u16) -> String {
    let grpc = a.grpc_port + (id - 1) * 10;
    let mut s = format!(
        "node_id = {id}\ndata_dir = \"{}\"\n[listen]\nsentinel = \"127.0.0.1:{}\"\ngrpc = \"127.0.0.1:{grpc}\"\npeer = \"127.0.0.1:{}\"\nmetrics = \"127.0.0.1:{}\"\n",
        dir.join(format!("node{id}")).display(),
        a.sentinel_port + id - 1,
        grpc + 1,
        grpc + 2,
    );
    for p in 1..=3u16 {
        s.push_str(&format!(
            "[[peers]]\nid = {p}\naddr = \"127.0.0.1:{}\"\n",
            a.grpc_port + (p - 1) * 10 + 1
        ));
    }
    s.push_str("[raft]\ninitial_cluster_state = \"new\"\n");
    s.push_str(&format!(
        "[[masters]]\nname = \"mymaster\"\naddr = \"127.0.0.1:{}\"\nquorum = 2\ndown_after_ms = {}\nfailover_timeout_ms = 30000\n",
        a.redis_port, a.down_after_ms
    ));
    s
}

/// Runs the demo until Ctrl-C.
pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let log_file = dir.join("demo.log");
    raft_sentinel::telemetry::init_demo(&log_file)
        .with_context(|| format!("cannot open {}", log_file.display()))?;
    let _redis = RedisSet(vec![
        start_redis(&dir, a.redis_port, None)?,
        start_redis(&dir, a.redis_port + 1, Some(a.redis_port))?,
        start_redis(&dir, a.redis_port + 2, Some(a.redis_port))?,
    ]);
    let mut nodes = Vec::new();
    for id in 1..=3u16 {
        let text = node_config(&a, &dir, id);
        let cfg = Config::resolve(&format!("demo node {id}"), &text, &Overrides::default())?;
        nodes.push(
            Node::start(cfg)
                .await
                .with_context(|| format!("starting node {id}"))?,
        );
    }
    // Every committed event, from node 1's log (all nodes apply the same ones).
    let events = nodes[0].raft.subscribe_events();
    // The instructions only make sense once the cluster answers: every node knows the
    // master and is in contact with a leader (otherwise it refuses lookups).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !nodes
        .iter()
        .all(|n| n.raft.has_leader_contact() && n.raft.state().masters.contains_key("mymaster"))
    {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the nodes did not form a cluster within 30 s; see {}",
                log_file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    print!("{}", instructions(&a, &dir, &log_file));
    let printer = tokio::spawn(print_events(events).instrument(tracing::info_span!("demo_events")));
    raft_sentinel::shutdown::signal().await;
    println!("stopping the demo");
    printer.abort();
    for n in nodes {
        n.stop().await;
    }
    Ok(())
}

fn instructions(a: &DemoArgs, dir: &Path, log_file: &Path) -> String {
    let s = a.sentinel_port;
    let g = a.grpc_port;
    let r = a.redis_port;
    format!(
        "\nraft-sentinel demo is running (data in {dir}):
  Redis master 127.0.0.1:{r}, replicas 127.0.0.1:{r1} and 127.0.0.1:{r2}
  coordinator nodes: Sentinel ports {s}, {s1}, {s2}; gRPC ports {g}, {g1}, {g2}
  full logs: {log}

Ask for the master:
  redis-cli -p {s} SENTINEL get-master-addr-by-name mymaster
  raft-sentinel ctl --endpoint 127.0.0.1:{g} get-master mymaster --linearizable
  raft-sentinel ctl --endpoint 127.0.0.1:{g} status
Trigger a failover:
  redis-cli -p {s} SENTINEL failover mymaster
  redis-cli -p {r} DEBUG SLEEP 30        (or kill the master's redis-server)
Watch the switch:
  redis-cli -p {s} SUBSCRIBE +switch-master

Committed events are printed below as they happen. Press Ctrl-C to stop everything.\n\n",
        dir = dir.display(),
        log = log_file.display(),
        r1 = r + 1,
        r2 = r + 2,
        s1 = s + 1,
        s2 = s + 2,
        g1 = g + 10,
        g2 = g + 20,
    )
}

/// Prints each committed event as one line: time, event, what it means, Sentinel's payload.
async fn print_events(mut rx: broadcast::Receiver<AppliedEvent>) {
    loop {
        match rx.recv().await {
            Ok(ev) => println!("{}", event_line(&ev.event, wall_ms())),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                println!("({n} events not shown: the terminal fell behind)")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `HH:MM:SS  +kind  meaning: payload`, e.g.
/// `12:00:03  +odown           master is down by quorum: master mymaster 127.0.0.1 16379 #quorum 2/2`.
fn event_line(ev: &Event, now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let meaning = match ev.kind.as_str() {
        "+monitor" => "now monitored",
        "-monitor" => "no longer monitored",
        "+sdown" => "a node sees it down",
        "-sdown" => "a node sees it up again",
        "+odown" => "master is down by quorum",
        "-odown" => "master is no longer down by quorum",
        "+new-epoch" => "new failover epoch",
        "+try-failover" => "failover starting",
        "+selected-slave" => "replica chosen for promotion",
        "+promoted-slave" => "replica promoted",
        "+failover-state-reconf-slaves" => "repointing the other replicas",
        "+slave-reconf-sent" => "replica told to follow the new master",
        "+slave-reconf-done" => "replica follows the new master",
        "+failover-end" => "failover finished",
        "+switch-master" => "clients now get the new master",
        "+slave" => "replica discovered",
        "+set" => "setting changed",
        "+reset-master" => "master state reset",
        k if k.starts_with("-failover-abort") => "failover aborted",
        _ => "",
    };
    let node = ev.node.map(|n| format!(" (node {n})")).unwrap_or_default();
    let meaning = if meaning.is_empty() {
        String::new()
    } else {
        format!("{meaning}{node}: ")
    };
    format!(
        "{:02}:{:02}:{:02}  {:<16} {meaning}{}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ev.kind,
        ev.payload
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_one_readable_line() {
        let ev = Event {
            kind: "+switch-master".into(),
            payload: "mymaster 127.0.0.1 16379 127.0.0.1 16380".into(),
            master: Some("mymaster".into()),
            node: None,
            switch: None,
        };
        assert_eq!(
            event_line(&ev, 3_723_000),
            "01:02:03  +switch-master   clients now get the new master: mymaster 127.0.0.1 16379 127.0.0.1 16380"
        );
    }
}
