//! `raft-sentinel demo`: a complete local setup in one command. Starts a Redis master and two
//! replicas (`redis-server` from PATH) and three coordinator nodes on loopback, prints how to
//! use them, and stops everything on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use raft_sentinel::app::Node;
use raft_sentinel::config::{Config, Overrides};

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
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
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
    let s = a.sentinel_port;
    let g = a.grpc_port;
    let r = a.redis_port;
    println!(
        "\nraft-sentinel demo is running (data in {dir}):
  Redis master 127.0.0.1:{r}, replicas 127.0.0.1:{r1} and 127.0.0.1:{r2}
  coordinator nodes: Sentinel ports {s}, {s1}, {s2}; gRPC ports {g}, {g1}, {g2}

Ask for the master:
  redis-cli -p {s} SENTINEL get-master-addr-by-name mymaster
  raft-sentinel ctl --endpoint 127.0.0.1:{g} get-master mymaster --linearizable
  raft-sentinel ctl --endpoint 127.0.0.1:{g} status
Trigger a failover:
  redis-cli -p {r} DEBUG SLEEP 30        (or kill the master's redis-server)
  redis-cli -p {s} SENTINEL failover mymaster
Watch the switch:
  redis-cli -p {s} SUBSCRIBE +switch-master

Press Ctrl-C to stop everything.\n",
        dir = dir.display(),
        r1 = r + 1,
        r2 = r + 2,
        s1 = s + 1,
        s2 = s + 2,
        g1 = g + 10,
        g2 = g + 20,
    );
    raft_sentinel::shutdown::signal().await;
    println!("stopping the demo");
    for n in nodes {
        n.stop().await;
    }
    Ok(())
}
