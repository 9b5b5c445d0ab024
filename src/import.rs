//! `import-sentinel-conf`: turns a Redis Sentinel `sentinel.conf` into this project's TOML
//! configuration, and says clearly what it could not carry over.
//!
//! Pure: text in, text and notes out. Sentinel's state lines (`known-replica`, `config-epoch`,
//! `myid`, ...) are dropped on purpose: here the Raft log holds that state.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{Addr, NodeId};

/// Where the generated node sits in its cluster (not knowable from `sentinel.conf`).
#[derive(Clone, Debug)]
pub struct ImportTarget {
    /// This node's id.
    pub node_id: NodeId,
    /// Every voting node, id → peer address.
    pub peers: BTreeMap<NodeId, String>,
    /// Data directory.
    pub data_dir: String,
}

/// The converted configuration.
#[derive(Clone, Debug)]
pub struct Imported {
    /// TOML text for `raft-sentinel run --config`.
    pub toml: String,
    /// What was not carried over, and why (one line each).
    pub skipped: Vec<String>,
    /// Masters found.
    pub masters: Vec<String>,
}

/// The file cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line could not be parsed.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The result would not be a valid configuration.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Default)]
struct Master {
    addr: Option<Addr>,
    quorum: u32,
    down_after_ms: Option<u64>,
    failover_timeout_ms: Option<u64>,
    parallel_syncs: Option<u32>,
    auth_pass: Option<String>,
    auth_user: Option<String>,
    notification_script: Option<String>,
    client_reconfig_script: Option<String>,
    line: usize,
}

/// Splits a config line into arguments by Redis's rules ([`crate::model::args`]); the
/// arguments of a config file must be UTF-8.
pub fn split_args(line: &str) -> Result<Vec<String>, String> {
    crate::model::args::split(line.as_bytes())
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|a| String::from_utf8(a).map_err(|_| "an argument is not valid UTF-8".to_string()))
        .collect()
}

fn toml_str(s: &str) -> String {
    // TOML basic strings share JSON's escapes for everything we may meet here.
    serde_json::to_string(s).expect("strings always serialize")
}

/// Converts `sentinel.conf` text.
pub fn convert(text: &str, target: &ImportTarget) -> Result<Imported, ImportError> {
    let mut masters: BTreeMap<String, Master> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut port: u16 = 26379;
    let mut bind: Option<String> = None;
    let mut requirepass: Option<String> = None;
    let mut announce_ip: Option<String> = None;
    let mut deny_scripts_reconfig: Option<bool> = None;
    let num = |line: usize, v: &str, what: &str| -> Result<u64, ImportError> {
        v.parse().map_err(|_| ImportError::Line {
            line,
            problem: format!("{what} '{v}' is not a number"),
        })
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let args = split_args(trimmed).map_err(|problem| ImportError::Line { line, problem })?;
        let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
        let skip = |why: &str| format!("line {line}: `{trimmed}`: {why}");
        match lower[0].as_str() {
            "port" if args.len() == 2 => {
                port = num(line, &args[1], "port")?
                    .try_into()
                    .map_err(|_| ImportError::Line {
                        line,
                        problem: "port out of range".into(),
                    })?
            }
            "bind" if args.len() >= 2 => {
                if args.len() > 2 {
                    skipped.push(skip("only the first bind address is used"));
                }
                bind = Some(args[1].trim_start_matches('-').to_string());
            }
            "requirepass" if args.len() == 2 => requirepass = Some(args[1].clone()),
            "sentinel" if args.len() >= 2 => {
                let sub = lower[1].as_str();
                let name = args.get(2).cloned().unwrap_or_default();
                let per_master = |m: &mut BTreeMap<String, Master>| -> Result<(), ImportError> {
                    if !m.contains_key(&name) {
                        return Err(ImportError::Line {
                            line,
                            problem: format!("'{name}' is used before its `sentinel monitor` line"),
                        });
                    }
                    Ok(())
                };
                match sub {
                    "monitor" if args.len() == 6 => {
                        let p = num(line, &args[4], "port")?;
                        let addr = u16::try_from(p)
                            .ok()
                            .and_then(|p| Addr::new(args[3].clone(), p).ok())
                            .ok_or_else(|| ImportError::Line {
                                line,
                                problem: format!("invalid address {}:{}", args[3], args[4]),
                            })?;
                        let quorum = num(line, &args[5], "quorum")? as u32;
                        let m = masters.entry(name).or_default();
                        m.addr = Some(addr);
                        m.quorum = quorum;
                        m.line = line;
                    }
                    "down-after-milliseconds" if args.len() == 4 => {
                        per_master(&mut masters)?;
                        masters.get_mut(&name).expect("checked").down_after_ms =
                            Some(num(line, &args[3], "down-after-milliseconds")?);
                    }
                    "failover-timeout" if args.len() == 4 => {
                        per_master(&mut masters)?;
                        masters.get_mut(&name).expect("checked").failover_timeout_ms =
                            Some(num(line, &args[3], "failover-timeout")?);
                    }
                    "parallel-syncs" if args.len() == 4 => {
                        per_master(&mut masters)?;
                        masters.get_mut(&name).expect("checked").parallel_syncs =
                            Some(num(line, &args[3], "parallel-syncs")? as u32);
                    }
                    "auth-pass" if args.len() == 4 => {
                        per_master(&mut masters)?;
                        masters.get_mut(&name).expect("checked").auth_pass = Some(args[3].clone());
                    }
                    "auth-user" if args.len() == 4 => {
                        per_master(&mut masters)?;
                        masters.get_mut(&name).expect("checked").auth_user = Some(args[3].clone());
                    }
                    "announce-ip" if args.len() == 3 => announce_ip = Some(args[2].clone()),
                    "known-replica" | "known-slave" | "known-sentinel" | "config-epoch"
                    | "leader-epoch" | "current-epoch" | "myid" => skipped.push(skip(
                        "Sentinel state; here the Raft log holds it (replicas are rediscovered)",
                    )),
                    "notification-script" | "client-reconfig-script" if args.len() == 4 => {
                        per_master(&mut masters)?;
                        let m = masters.get_mut(&name).expect("checked");
                        let path = (!args[3].is_empty()).then(|| args[3].clone());
                        if path.as_ref().is_some_and(|p| !p.starts_with('/')) {
                            return Err(ImportError::Line {
                                line,
                                problem: format!("{sub} must be an absolute path"),
                            });
                        }
                        if sub == "notification-script" {
                            m.notification_script = path;
                        } else {
                            m.client_reconfig_script = path;
                        }
                    }
                    "deny-scripts-reconfig" if args.len() == 3 => {
                        deny_scripts_reconfig = Some(match lower[2].as_str() {
                            "yes" => true,
                            "no" => false,
                            _ => {
                                return Err(ImportError::Line {
                                    line,
                                    problem: "deny-scripts-reconfig must be yes or no".into(),
                                })
                            }
                        })
                    }
                    "announce-port" => skipped.push(skip("set [listen].sentinel to the port clients should use")),
                    "sentinel-user" | "sentinel-pass" => skipped.push(skip(
                        "no Sentinel-to-Sentinel links; nodes talk over the peer port (use [security] tls)",
                    )),
                    "master-reboot-down-after-period" | "rename-command" => {
                        skipped.push(skip("not supported yet; set it with SENTINEL SET if needed later"))
                    }
                    "resolve-hostnames" | "announce-hostnames" => {
                        skipped.push(skip("no equivalent setting"))
                    }
                    _ => skipped.push(skip("unknown or malformed sentinel directive")),
                }
            }
            "tls-port" | "tls-cert-file" | "tls-key-file" | "tls-ca-cert-file"
            | "tls-replication" => skipped.push(skip(
                "TLS is configured with [security] tls (peer/API) and per-master tls",
            )),
            "dir" | "logfile" | "daemonize" | "pidfile" | "protected-mode" | "loglevel"
            | "supervised" => skipped.push(skip(
                "process setting of redis-sentinel; use data_dir, systemd and RAFT_SENTINEL_LOG",
            )),
            _ => skipped.push(skip("not a Sentinel setting this tool knows")),
        }
    }
    if masters.is_empty() {
        return Err(ImportError::Invalid(
            "no `sentinel monitor` line found".into(),
        ));
    }
    if !target.peers.contains_key(&target.node_id) {
        return Err(ImportError::Invalid(format!(
            "node {} is not among the peers given",
            target.node_id
        )));
    }
    let host = bind.unwrap_or_else(|| "0.0.0.0".into());
    let host = if host == "*" { "0.0.0.0".into() } else { host };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Converted from sentinel.conf by raft-sentinel import-sentinel-conf."
    );
    let _ = writeln!(out, "node_id = {}", target.node_id);
    let _ = writeln!(out, "data_dir = {}", toml_str(&target.data_dir));
    if let Some(d) = deny_scripts_reconfig {
        let _ = writeln!(out, "deny_scripts_reconfig = {d}");
    }
    out.push('\n');
    let _ = writeln!(out, "[listen]");
    let _ = writeln!(out, "sentinel = {}", toml_str(&format!("{host}:{port}")));
    if let Some(ip) = &announce_ip {
        let _ = writeln!(out, "announce_ip = {}", toml_str(ip));
    }
    out.push('\n');
    for (id, addr) in &target.peers {
        let _ = writeln!(out, "[[peers]]\nid = {id}\naddr = {}\n", toml_str(addr));
    }
    // A migration forms a new cluster; a node that later loses its data dir still does not
    // re-bootstrap while a peer knows it.
    let _ = writeln!(out, "[raft]\ninitial_cluster_state = \"new\"\n");
    // The peer and gRPC ports listen on all interfaces by default: a node refuses to start
    // that way without TLS or a secret, so say what to set.
    let _ = writeln!(out, "[security]");
    if let Some(p) = &requirepass {
        let _ = writeln!(out, "requirepass = {}", toml_str(p));
    }
    let _ = writeln!(
        out,
        "# Required beyond loopback (see the threat model in deploy/README.md): the same long\n\
         # random secret on every node, e.g. from `openssl rand -hex 32`, or `tls = {{ ... }}`.\n\
         # cluster_secret_file = \"/etc/raft-sentinel/cluster-secret\""
    );
    if requirepass.is_none() {
        let _ = writeln!(
            out,
            "# The gRPC API password (ctl --password-file); requirepass serves when it is set.\n\
             # api_password_file = \"/etc/raft-sentinel/api-password\""
        );
    }
    out.push('\n');
    let mut names = Vec::new();
    for (name, m) in &masters {
        let addr = m
            .addr
            .as_ref()
            .ok_or_else(|| ImportError::Invalid(format!("master '{name}' has no address")))?;
        if m.quorum as usize > target.peers.len() {
            return Err(ImportError::Line {
                line: m.line,
                problem: format!(
                    "quorum {} of '{name}' is more than the {} coordinator node(s) given: pass --peer for every node",
                    m.quorum,
                    target.peers.len()
                ),
            });
        }
        let _ = writeln!(out, "[[masters]]");
        let _ = writeln!(out, "name = {}", toml_str(name));
        let _ = writeln!(out, "addr = {}", toml_str(&addr.to_string()));
        let _ = writeln!(out, "quorum = {}", m.quorum);
        // Sentinel's defaults where the file is silent, so behaviour does not change silently.
        let _ = writeln!(out, "down_after_ms = {}", m.down_after_ms.unwrap_or(30_000));
        let _ = writeln!(
            out,
            "failover_timeout_ms = {}",
            m.failover_timeout_ms.unwrap_or(180_000)
        );
        let _ = writeln!(out, "parallel_syncs = {}", m.parallel_syncs.unwrap_or(1));
        if let Some(u) = &m.auth_user {
            let _ = writeln!(out, "auth_user = {}", toml_str(u));
        }
        if let Some(p) = &m.auth_pass {
            let _ = writeln!(out, "auth_pass = {}", toml_str(p));
        }
        if let Some(p) = &m.notification_script {
            let _ = writeln!(out, "notification_script = {}", toml_str(p));
        }
        if let Some(p) = &m.client_reconfig_script {
            let _ = writeln!(out, "client_reconfig_script = {}", toml_str(p));
        }
        out.push('\n');
        names.push(name.clone());
    }
    Ok(Imported {
        toml: out,
        skipped,
        masters: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    const SEEDS: &str = r#"
port 26379
daemonize no
sentinel monitor mymaster 127.0.0.1 6379 2
sentinel down-after-milliseconds mymaster 5000
sentinel failover-timeout mymaster 10000
sentinel auth-pass mymaster "s3cret pass"
sentinel parallel-syncs mymaster 1
sentinel known-replica mymaster 127.0.0.1 6380
sentinel myid 0123456789012345678901234567890123456789
sentinel notification-script mymaster /bin/notify
sentinel client-reconfig-script mymaster /usr/local/bin/reconfig.sh
sentinel deny-scripts-reconfig no
"#;

    fn target() -> ImportTarget {
        ImportTarget {
            node_id: 2,
            peers: (1..=3).map(|i| (i, format!("10.0.0.{i}:7701"))).collect(),
            data_dir: "/var/lib/raft-sentinel/2".into(),
        }
    }

    #[test]
    fn seeds_config_converts_to_a_valid_config() {
        let out = convert(SEEDS, &target()).unwrap();
        let cfg = Config::resolve("imported", &out.toml, &Overrides::default()).unwrap();
        assert_eq!(cfg.node_id, 2);
        assert_eq!(cfg.listen.sentinel, "0.0.0.0:26379".parse().unwrap());
        let m = &cfg.masters[0];
        assert_eq!(m.name, "mymaster");
        assert_eq!(m.addr.to_string(), "127.0.0.1:6379");
        assert_eq!(
            (
                m.quorum,
                m.down_after_ms,
                m.failover_timeout_ms,
                m.parallel_syncs
            ),
            (2, 5000, 10000, 1)
        );
        assert_eq!(m.auth_pass.as_deref(), Some("s3cret pass"));
        assert_eq!(out.skipped.len(), 3, "{:?}", out.skipped);
        assert!(out
            .skipped
            .iter()
            .any(|s| s.contains("known-replica") && s.contains("Raft log")));
        // Script lines are imported.
        assert_eq!(m.notification_script.as_deref(), Some("/bin/notify"));
        assert_eq!(
            m.client_reconfig_script.as_deref(),
            Some("/usr/local/bin/reconfig.sh")
        );
        assert!(!cfg.deny_scripts_reconfig);
        assert!(out.skipped.iter().any(|s| s.contains("daemonize")));
    }

    #[test]
    fn defaults_requirepass_and_bind() {
        let text = "bind 127.0.0.1 ::1\nport 5000\nrequirepass \"a\\\"b\"\nsentinel monitor m 10.1.1.1 6379 1\n";
        let out = convert(text, &target()).unwrap();
        let cfg = Config::resolve("imported", &out.toml, &Overrides::default()).unwrap();
        assert_eq!(cfg.listen.sentinel, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(cfg.requirepass.as_deref(), Some("a\"b"));
        assert_eq!(
            cfg.masters[0].down_after_ms, 30_000,
            "Sentinel's default when unset"
        );
        assert_eq!(cfg.masters[0].failover_timeout_ms, 180_000);
        assert!(out.skipped.iter().any(|s| s.contains("first bind address")));
    }

    #[test]
    fn clear_errors() {
        let e = convert("sentinel down-after-milliseconds x 5\n", &target()).unwrap_err();
        assert!(
            e.to_string().contains("line 1")
                && e.to_string().contains("before its `sentinel monitor`")
        );
        let e = convert("port 1\n", &target()).unwrap_err();
        assert!(e.to_string().contains("no `sentinel monitor`"));
        let e = convert("sentinel monitor m h 6379 two\n", &target()).unwrap_err();
        assert!(e.to_string().contains("quorum 'two'"));
        let e = convert("sentinel auth-pass m \"open\n", &target()).unwrap_err();
        assert!(e.to_string().contains("unbalanced quotes"));
        let mut one = target();
        one.peers = [(2, "h:1".to_string())].into();
        let e = convert(SEEDS, &one).unwrap_err();
        assert!(e.to_string().contains("--peer for every node"), "{e}");
    }

    #[test]
    fn splits_like_redis() {
        assert_eq!(
            split_args("a  b\t'c d' \"e\\x41\\n\"").unwrap(),
            ["a", "b", "c d", "eA\n"]
        );
        assert!(split_args("\"a\"b").is_err());
    }
}
