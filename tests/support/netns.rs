//! A small network lab of Linux network namespaces for partition tests (needs root).
//!
//! Every host is a namespace with its own loopback and one interface on a private bridge that
//! lives in a namespace of its own, so nothing is reachable from (or routed to) the root
//! namespace. Host `i` has address `10.77.0.<i + 1>` (each lab has its own bridge). Isolating a host takes its link
//! down; healing brings it up again. Dropping the lab kills the processes started in it (by
//! pid) and deletes the namespaces.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static LABS: AtomicU32 = AtomicU32::new(0);

/// One namespace host.
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its address on the lab bridge.
    pub ip: String,
    /// Bridge-side interface name (in the switch namespace).
    sw_if: String,
}

/// API password of the nodes `NetLab::node_config` configures (for `ctl`, in the environment
/// variable RAFT_SENTINEL_PASSWORD).
pub const API_PASSWORD: &str = "netlab-api-password-5d1e";
/// Cluster secret of those nodes.
pub const CLUSTER_SECRET: &str = "netlab-cluster-secret-93b7a0c4";

/// A set of hosts on one bridge.
pub struct NetLab {
    /// Switch namespace holding the bridge.
    sw: String,
    /// The hosts.
    pub hosts: Vec<Host>,
    children: Vec<Child>,
    /// Where each spawned process writes its stderr (printed when the test fails).
    logs: Vec<std::path::PathBuf>,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetLab {
    /// Whether namespaces can be created here (root with iproute2).
    pub fn available() -> bool {
        let name = format!("rsprobe{}", std::process::id());
        let ok = ip(&["netns", "add", &name]).status.success();
        if ok {
            let _ = ip(&["netns", "del", &name]);
        }
        ok
    }

    /// Creates `n` hosts.
    pub fn new(n: usize) -> NetLab {
        // Labs never share a bridge, so they can all use the same subnet.
        let tag = format!(
            "rs{}x{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let sw = format!("{tag}sw");
        ip_ok(&["netns", "add", &sw]);
        ip_ok(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", &sw, "link", "set", "br0", "up"]);
        ip_ok(&["-n", &sw, "link", "set", "lo", "up"]);
        let mut hosts = Vec::new();
        for i in 0..n {
            let ns = format!("{tag}h{i}");
            let (a, b) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
            // Interface names are limited to 15 bytes.
            let (a, b) = (shorten(&a), shorten(&b));
            ip_ok(&["netns", "add", &ns]);
            ip_ok(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip_ok(&["link", "set", &a, "netns", &ns]);
            ip_ok(&["link", "set", &b, "netns", &sw]);
            ip_ok(&["-n", &ns, "link", "set", &a, "name", "eth0"]);
            let addr = format!("10.77.0.{}", i + 1);
            ip_ok(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
            ip_ok(&["-n", &sw, "link", "set", &b, "master", "br0"]);
            ip_ok(&["-n", &sw, "link", "set", &b, "up"]);
            hosts.push(Host {
                ns,
                ip: addr,
                sw_if: b,
            });
        }
        NetLab {
            sw,
            hosts,
            children: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// A command that runs inside host `i`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].ns, program]);
        c
    }

    /// Runs `raft-sentinel ctl <args>` inside host `i` with the lab's API password; returns
    /// (exit code, stdout, stderr).
    pub fn ctl(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let out = self
            .command(i, super::BIN)
            .env("RAFT_SENTINEL_PASSWORD", API_PASSWORD)
            .arg("ctl")
            .args(args)
            .output()
            .expect("run ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts a long-running process in host `i`; it is killed when the lab is dropped.
    /// Returns its index for [`NetLab::kill`].
    pub fn spawn(
        &mut self,
        i: usize,
        program: &str,
        args: &[String],
        log: &std::path::Path,
    ) -> usize {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = self
            .command(i, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn in namespace");
        self.children.push(child);
        self.logs.push(log.to_path_buf());
        self.children.len() - 1
    }

    /// kill -9 a process started with [`NetLab::spawn`].
    pub fn kill(&mut self, idx: usize) {
        let _ = self.children[idx].kill();
        let _ = self.children[idx].wait();
    }

    /// Cuts host `i` off the bridge (both directions).
    pub fn isolate(&self, i: usize) {
        ip_ok(&["-n", &self.sw, "link", "set", &self.hosts[i].sw_if, "down"]);
    }

    /// Reconnects host `i`.
    pub fn heal(&self, i: usize) {
        ip_ok(&["-n", &self.sw, "link", "set", &self.hosts[i].sw_if, "up"]);
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= 15 {
        return s.to_string();
    }
    s[s.len() - 15..].to_string()
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed run on a CI machine leaves nothing else behind to read.
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(80)..].join("\n");
                eprintln!("===== {} (last 80 lines) =====\n{tail}", log.display());
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.sw]);
    }
}

impl NetLab {
    /// Cuts hosts `i` and `j` off each other only, with blackhole routes on both sides; each
    /// keeps every other link (a partition between coordinators that clients can still reach).
    pub fn cut(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            ip_ok(&[
                "-n",
                &self.hosts[from].ns,
                "route",
                "add",
                "blackhole",
                &format!("{}/32", self.hosts[to].ip),
            ]);
        }
    }

    /// Undoes [`NetLab::cut`].
    pub fn uncut(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            ip_ok(&[
                "-n",
                &self.hosts[from].ns,
                "route",
                "del",
                "blackhole",
                &format!("{}/32", self.hosts[to].ip),
            ]);
        }
    }

    /// Runs `f` on a new thread that lives in host `i`'s network namespace, so the sockets
    /// it opens (an in-process client library, say) are on the lab network.
    pub fn run_in<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        use std::os::fd::AsRawFd;
        let path = format!("/var/run/netns/{}", self.hosts[i].ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("namespace handle");
            // setns(2) on this thread only: the rest of the test process stays where it is.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

/// Arguments of a redis-server on `ip:port` in a lab host: no persistence, no protected mode
/// (clients come from other hosts), its files (the RDB a replica receives) in `dir`, then
/// `extra` (e.g. `--replicaof HOST PORT`).
pub fn redis_args(ip: &str, port: u16, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("redis dir");
    let (dir, port) = (dir.display().to_string(), port.to_string());
    let base = [
        "--dir",
        &dir,
        "--bind",
        ip,
        "--port",
        &port,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

impl NetLab {
    /// Config of coordinator node `i` (0-based) of a three-node lab cluster, written under
    /// `dir`: every listener on 0.0.0.0 (Sentinel 26379, gRPC 7700, peer 7701, metrics 9700),
    /// peers on hosts 0-2, and `mymaster` at `master`. `listen_extra` and `master_extra` are
    /// appended to those sections.
    pub fn node_config(
        &self,
        i: usize,
        dir: &std::path::Path,
        master: &str,
        listen_extra: &str,
        master_extra: &str,
    ) -> std::path::PathBuf {
        let mut t =
            super::NodeToml::new(i as u64 + 1, dir.join(format!("data{}", i + 1)).display())
                .listen("0.0.0.0", [26379, 7700, 7701, 9700])
                .listen_extra(listen_extra)
                .new_cluster()
                .raft("tick_ms", 50)
                .raft("election_ticks", 10)
                .raft("heartbeat_ticks", 2);
        for j in 0..3 {
            t = t.peer(j as u64 + 1, format!("{}:7701", self.hosts[j].ip));
        }
        // Nodes listen on non-loopback addresses without TLS, so they need the cluster secret
        // and an API password (the secured path); ctl passes API_PASSWORD.
        let cluster = dir.join("cluster.secret");
        let api = dir.join("api.secret");
        super::write_secret(&cluster, CLUSTER_SECRET);
        super::write_secret(&api, API_PASSWORD);
        t.security_file("cluster_secret_file", &cluster)
            .security_file("api_password_file", &api)
            .extra(&format!(
                "[[masters]]\nname = \"mymaster\"\naddr = \"{master}\"\nquorum = 2\ndown_after_ms = 1000\n{master_extra}"
            ))
            .write(&dir.join(format!("node{}.toml", i + 1)))
    }
}
