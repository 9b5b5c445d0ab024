//! Leader placement with real processes: nodes on three loopback addresses (three "hosts"),
//! the master on node 1's host. When node 1 is made leader, it hands leadership to a node on
//! a host without a master.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{eventually, free_port, NodeToml, RedisProcess, BIN};

struct Proc(std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ctl(endpoint: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["ctl", "--endpoint", endpoint, "--timeout-ms", "3000"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn leader(endpoint: &str) -> Option<u64> {
    let (code, out) = ctl(endpoint, &["status", "--json"]);
    if code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    v["leader_id"].as_u64().filter(|l| *l != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_off_the_masters_host() {
    let m = RedisProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let ports: Vec<[u16; 4]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port(), free_port()])
        .collect();
    let mut procs = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let mut cfg = NodeToml::new(
            i as u64 + 1,
            dir.path().join(format!("d{}", i + 1)).display(),
        )
        .listen(hosts[i], *p);
        for (j, q) in ports.iter().enumerate() {
            cfg = cfg.peer(j as u64 + 1, format!("{}:{}", hosts[j], q[2]));
        }
        let path = cfg
            .new_cluster()
            .raft("tick_ms", 20)
            .extra(&format!(
                "[[masters]]\nname = \"mymaster\"\naddr = \"127.0.0.1:{}\"\nquorum = 2\ndown_after_ms = 1000\n",
                m.port
            ))
            .write(&dir.path().join(format!("n{}.toml", i + 1)));
        procs.push(Proc(
            Command::new(BIN)
                .args(["run", "--config", &path.display().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("n{}.log", i + 1))).unwrap())
                .spawn()
                .unwrap(),
        ));
    }
    let ep: String = (0..3)
        .map(|i| format!("{}:{}", hosts[i], ports[i][1]))
        .collect::<Vec<_>>()
        .join(",");
    // Whoever leads first, leadership ends up off host 1 (node 1 shares it with the master).
    let settled = eventually(
        Duration::from_secs(20),
        "a leader that is not node 1",
        || async { leader(&ep).filter(|l| *l != 1) },
    )
    .await;
    // Now force node 1 to lead: it must hand leadership away again by itself.
    let (code, _) = ctl(&ep, &["transfer-leader", "--to", "1"]);
    assert_eq!(code, 0, "transfer to node 1");
    let moved = eventually(
        Duration::from_secs(15),
        "node 1 gives leadership away",
        || async { leader(&ep).filter(|l| *l != 1) },
    )
    .await;
    assert!(
        [2, 3].contains(&moved),
        "leader {moved} (first settled on {settled})"
    );
    // And it stays off host 1.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(leader(&ep), Some(1));
    let log = std::fs::read_to_string(dir.path().join("n1.log")).unwrap();
    assert!(
        log.contains("moving Raft leadership off a host"),
        "node 1 logged why it moved leadership"
    );
}
