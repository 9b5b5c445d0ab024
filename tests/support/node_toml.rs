//! One builder for a node's TOML config, so every test writes the same layout: top-level keys,
//! `[listen]`, `[[peers]]`, `[raft]`, `[security]`, then any further tables. TOML needs the
//! top-level keys before the first table; the builder keeps that order whatever the call order.

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// A node config under construction. Sections left empty are not written.
#[derive(Clone, Debug, Default)]
pub struct NodeToml {
    top: String,
    node_id: u64,
    data_dir: String,
    listen: String,
    peers: Vec<(u64, String)>,
    raft: String,
    security: String,
    extra: String,
}

impl NodeToml {
    /// `node_id` and `data_dir`, nothing else yet.
    pub fn new(node_id: u64, data_dir: impl Display) -> NodeToml {
        NodeToml {
            node_id,
            data_dir: data_dir.to_string(),
            ..NodeToml::default()
        }
    }

    /// Top-level keys written before `node_id` (each line `key = value`).
    pub fn top(mut self, toml: &str) -> NodeToml {
        self.top.push_str(toml);
        self
    }

    /// `[listen]` with the Sentinel, gRPC, peer and metrics ports, in that order, on `host`.
    pub fn listen(mut self, host: &str, [sentinel, grpc, peer, metrics]: [u16; 4]) -> NodeToml {
        self.listen.push_str(&format!(
            "sentinel = \"{host}:{sentinel}\"\ngrpc = \"{host}:{grpc}\"\npeer = \"{host}:{peer}\"\nmetrics = \"{host}:{metrics}\"\n"
        ));
        self
    }

    /// More `[listen]` keys (e.g. `announce_ip`).
    pub fn listen_extra(mut self, toml: &str) -> NodeToml {
        self.listen.push_str(toml);
        self
    }

    /// One `[[peers]]` entry.
    pub fn peer(mut self, id: u64, addr: impl Display) -> NodeToml {
        self.peers.push((id, addr.to_string()));
        self
    }

    /// A `[raft]` key; `value` is TOML (quote strings yourself).
    pub fn raft(mut self, key: &str, value: impl Display) -> NodeToml {
        self.raft.push_str(&format!("{key} = {value}\n"));
        self
    }

    /// `[raft] initial_cluster_state = "new"`.
    pub fn new_cluster(self) -> NodeToml {
        self.raft("initial_cluster_state", "\"new\"")
    }

    /// A `[security]` key; `value` is TOML (quote strings yourself).
    pub fn security(mut self, key: &str, value: impl Display) -> NodeToml {
        self.security.push_str(&format!("{key} = {value}\n"));
        self
    }

    /// A `[security]` key naming a file.
    pub fn security_file(self, key: &str, path: &Path) -> NodeToml {
        self.security(key, format!("\"{}\"", path.display()))
    }

    /// `[security] tls = { cert, key, ca }`.
    pub fn tls(self, cert: &Path, key: &Path, ca: &Path) -> NodeToml {
        self.security(
            "tls",
            format!(
                "{{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}",
                cert.display(),
                key.display(),
                ca.display()
            ),
        )
    }

    /// Further tables, written last (`[[masters]]`, ...). If they hold a `[security]` table, the
    /// builder's own `[security]` keys go into it, as TOML allows a table only once.
    pub fn extra(mut self, toml: &str) -> NodeToml {
        self.extra.push_str(toml);
        self
    }

    /// The config text.
    pub fn render(&self) -> String {
        let mut s = self.top.clone();
        s.push_str(&format!(
            "node_id = {}\ndata_dir = \"{}\"\n\n",
            self.node_id, self.data_dir
        ));
        if !self.listen.is_empty() {
            s.push_str(&format!("[listen]\n{}\n", self.listen));
        }
        for (id, addr) in &self.peers {
            s.push_str(&format!("[[peers]]\nid = {id}\naddr = \"{addr}\"\n\n"));
        }
        if !self.raft.is_empty() {
            s.push_str(&format!("[raft]\n{}\n", self.raft));
        }
        if self.extra.contains("[security]\n") {
            s.push_str(&self.extra.replacen(
                "[security]\n",
                &format!("[security]\n{}", self.security),
                1,
            ));
        } else {
            if !self.security.is_empty() {
                s.push_str(&format!("[security]\n{}\n", self.security));
            }
            s.push_str(&self.extra);
        }
        s
    }

    /// Writes the config to `path` and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.render()).expect("write node config");
        path.to_path_buf()
    }
}

/// One `[[masters]]` table: name, address and quorum, then any further keys in call order.
#[derive(Clone, Debug)]
pub struct MasterToml(String);

impl MasterToml {
    /// `name`, `addr` and `quorum`.
    pub fn new(name: &str, addr: impl Display, quorum: u32) -> MasterToml {
        MasterToml(format!(
            "[[masters]]\nname = \"{name}\"\naddr = \"{addr}\"\nquorum = {quorum}\n"
        ))
    }

    /// A key whose `value` is TOML as written (a number, a bool).
    pub fn set(mut self, key: &str, value: impl Display) -> MasterToml {
        self.0.push_str(&format!("{key} = {value}\n"));
        self
    }

    /// A string key.
    pub fn text(self, key: &str, value: impl Display) -> MasterToml {
        self.set(key, format!("\"{value}\""))
    }
}

impl From<MasterToml> for String {
    fn from(t: MasterToml) -> String {
        t.0
    }
}

impl Display for MasterToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
