//! `import-sentinel-conf` on a seeds-style sentinel.conf gives configs that start three nodes
//! which monitor that master.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::{eventually, free_port, RedisProcess, BIN};

struct Proc(std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_style_sentinel_conf_starts_and_monitors() {
    let m = RedisProcess::start(&["--requirepass", "imp0rt-pw"]);
    let _r = RedisProcess::start_replica(
        &m,
        &["--masterauth", "imp0rt-pw", "--requirepass", "imp0rt-pw"],
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port 26379\nsentinel monitor mymaster 127.0.0.1 {} 2\nsentinel down-after-milliseconds mymaster 5000\nsentinel failover-timeout mymaster 10000\nsentinel auth-pass mymaster imp0rt-pw\nsentinel known-replica mymaster 127.0.0.1 1\n",
            m.port
        ),
    )
    .unwrap();
    let ports: Vec<[u16; 4]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port(), free_port()])
        .collect();
    let peer_args: Vec<String> = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[i][2]))
        .collect();
    let mut procs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let out_file = dir.path().join(format!("node{}.toml", i + 1));
        let mut cmd = Command::new(BIN);
        cmd.args(["import-sentinel-conf", &conf.display().to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args([
                "--data-dir",
                &dir.path()
                    .join(format!("data{}", i + 1))
                    .display()
                    .to_string(),
            ])
            .args(["--output", &out_file.display().to_string()]);
        for p in &peer_args {
            cmd.args(["--peer", p]);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "import failed: {err}");
        assert!(
            err.contains("not carried over") && err.contains("known-replica"),
            "{err}"
        );
        let toml = std::fs::read_to_string(&out_file).unwrap();
        assert!(
            toml.contains("down_after_ms = 5000") && toml.contains("failover_timeout_ms = 10000"),
            "{toml}"
        );
        // The listen ports differ per node on one host; the rest of the file is used as is.
        let child = Command::new(BIN)
            .args(["run", "--config", &out_file.display().to_string()])
            .args(["--sentinel-listen", &format!("127.0.0.1:{}", port[0])])
            .args(["--grpc-listen", &format!("127.0.0.1:{}", port[1])])
            .args(["--peer-listen", &format!("127.0.0.1:{}", port[2])])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", port[3])])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("node{}.log", i + 1))).unwrap())
            .spawn()
            .unwrap();
        procs.push(Proc(child));
    }
    let grpc = format!("http://127.0.0.1:{}", ports[0][1]);
    let detail = eventually(
        Duration::from_secs(30),
        "imported master monitored with its replica",
        || async {
            let mut c = pb::coordinator_client::CoordinatorClient::connect(grpc.clone())
                .await
                .ok()?;
            let d = c
                .get_master_detail(pb::GetMasterDetailRequest {
                    name: "mymaster".into(),
                })
                .await
                .ok()?
                .into_inner();
            // The password was carried over: the monitor authenticates and finds the replica.
            (d.replicas.len() == 1 && d.replicas[0].master_link_up).then_some(d)
        },
    )
    .await;
    let master = detail.master.unwrap();
    assert_eq!(
        (
            master.quorum,
            detail.down_after_ms,
            detail.failover_timeout_ms
        ),
        (2, 5000, 10000)
    );
    assert_eq!(master.port as u16, m.port);
    assert!(detail
        .master_instance
        .unwrap()
        .flags
        .iter()
        .all(|f| f != "s_down"));
}
