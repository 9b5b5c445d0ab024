//! A real `redis-sentinel` beside the nodes, for byte-for-byte and shape comparisons.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, RedisProcess};

/// A real `redis-sentinel` watching `master` as `mymaster`, on a free port, killed on drop.
pub struct RealSentinel {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RealSentinel {
    /// Starts it with `quorum` and `extra` sentinel.conf lines, and waits until it listens.
    pub fn start(master: &RedisProcess, quorum: u32, extra: &str) -> RealSentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} {quorum}\n{extra}",
                dir.path().display(),
                master.port
            ),
        )
        .unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .args(["--logfile", &dir.path().join("log").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel must be installed (apt-get install redis-sentinel)");
        let mut tries = 0;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tries += 1;
            assert!(tries < 500, "redis-sentinel on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RealSentinel {
            port,
            child,
            _dir: dir,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RealSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
