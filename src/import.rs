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
    let mut conf = SentinelConf::default();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        conf.directive(&Directive::parse(i + 1, trimmed)?)?;
    }
    if conf.masters.is_empty() {
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
    let mut out = String::new();
    write_node(&mut out, &conf, target);
    let mut names = Vec::new();
    for (name, m) in &conf.masters {
        write_master(&mut out, name, m, target.peers.len())?;
        names.push(name.clone());
    }
    Ok(Imported {
        toml: out,
        skipped: conf.skipped,
        masters: names,
    })
}

/// One line of `sentinel.conf`, split into arguments.
struct Directive<'a> {
    /// 1-based line number.
    line: usize,
    text: &'a str,
    args: Vec<String>,
    /// The arguments in lower case, for matching names.
    lower: Vec<String>,
}

impl<'a> Directive<'a> {
    fn parse(line: usize, text: &'a str) -> Result<Self, ImportError> {
        let args = split_args(text).map_err(|problem| ImportError::Line { line, problem })?;
        let lower = args.iter().map(|a| a.to_ascii_lowercase()).collect();
        Ok(Directive {
            line,
            text,
            args,
            lower,
        })
    }

    fn error(&self, problem: impl Into<String>) -> ImportError {
        ImportError::Line {
            line: self.line,
            problem: problem.into(),
        }
    }

    /// The note for a line that is not carried over.
    fn skip(&self, why: &str) -> String {
        format!("line {}: `{}`: {why}", self.line, self.text)
    }

    /// Argument `i` as a number; `what` names it in the error.
    fn num(&self, i: usize, what: &str) -> Result<u64, ImportError> {
        let v = &self.args[i];
        v.parse()
            .map_err(|_| self.error(format!("{what} '{v}' is not a number")))
    }
}

/// What the directives set, as they are read.
struct SentinelConf {
    masters: BTreeMap<String, Master>,
    skipped: Vec<String>,
    port: u16,
    bind: Option<String>,
    requirepass: Option<String>,
    announce_ip: Option<String>,
    deny_scripts_reconfig: Option<bool>,
}

impl Default for SentinelConf {
    fn default() -> Self {
        SentinelConf {
            masters: BTreeMap::new(),
            skipped: Vec::new(),
            port: 26379,
            bind: None,
            requirepass: None,
            announce_ip: None,
            deny_scripts_reconfig: None,
        }
    }
}

impl SentinelConf {
    /// A top-level directive: the few process settings that carry over, `sentinel ...`, or a
    /// note on why it does not.
    fn directive(&mut self, d: &Directive<'_>) -> Result<(), ImportError> {
        let args = &d.args;
        match d.lower[0].as_str() {
            "port" if args.len() == 2 => {
                self.port = d
                    .num(1, "port")?
                    .try_into()
                    .map_err(|_| d.error("port out of range"))?
            }
            "bind" if args.len() >= 2 => {
                if args.len() > 2 {
                    self.skipped
                        .push(d.skip("only the first bind address is used"));
                }
                self.bind = Some(args[1].trim_start_matches('-').to_string());
            }
            "requirepass" if args.len() == 2 => self.requirepass = Some(args[1].clone()),
            "sentinel" if args.len() >= 2 => return self.sentinel(d),
            "tls-port" | "tls-cert-file" | "tls-key-file" | "tls-ca-cert-file"
            | "tls-replication" => self.skipped.push(
                d.skip("TLS is configured with [security] tls (peer/API) and per-master tls"),
            ),
            "dir" | "logfile" | "daemonize" | "pidfile" | "protected-mode" | "loglevel"
            | "supervised" => self.skipped.push(d.skip(
                "process setting of redis-sentinel; use data_dir, systemd and RAFT_SENTINEL_LOG",
            )),
            _ => self
                .skipped
                .push(d.skip("not a Sentinel setting this tool knows")),
        }
        Ok(())
    }

    /// `sentinel SUBCOMMAND ...`.
    fn sentinel(&mut self, d: &Directive<'_>) -> Result<(), ImportError> {
        let sub = d.lower[1].as_str();
        let why = match (sub, d.args.len()) {
            ("monitor", 6) => return self.monitor(d),
            (
                "down-after-milliseconds"
                | "failover-timeout"
                | "parallel-syncs"
                | "auth-pass"
                | "auth-user"
                | "notification-script"
                | "client-reconfig-script",
                4,
            ) => return self.master_option(d),
            ("announce-ip", 3) => {
                self.announce_ip = Some(d.args[2].clone());
                return Ok(());
            }
            ("deny-scripts-reconfig", 3) => {
                self.deny_scripts_reconfig = Some(match d.lower[2].as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(d.error("deny-scripts-reconfig must be yes or no")),
                });
                return Ok(());
            }
            (
                "known-replica" | "known-slave" | "known-sentinel" | "config-epoch"
                | "leader-epoch" | "current-epoch" | "myid",
                _,
            ) => "Sentinel state; here the Raft log holds it (replicas are rediscovered)",
            ("announce-port", _) => "set [listen].sentinel to the port clients should use",
            ("sentinel-user" | "sentinel-pass", _) => {
                "no Sentinel-to-Sentinel links; nodes talk over the peer port (use [security] tls)"
            }
            ("master-reboot-down-after-period" | "rename-command", _) => {
                "not supported yet; set it with SENTINEL SET if needed later"
            }
            ("resolve-hostnames" | "announce-hostnames", _) => "no equivalent setting",
            _ => "unknown or malformed sentinel directive",
        };
        self.skipped.push(d.skip(why));
        Ok(())
    }

    /// `sentinel monitor NAME HOST PORT QUORUM`.
    fn monitor(&mut self, d: &Directive<'_>) -> Result<(), ImportError> {
        let args = &d.args;
        let p = d.num(4, "port")?;
        let addr = u16::try_from(p)
            .ok()
            .and_then(|p| Addr::new(args[3].clone(), p).ok())
            .ok_or_else(|| d.error(format!("invalid address {}:{}", args[3], args[4])))?;
        let quorum = d.num(5, "quorum")? as u32;
        let m = self.masters.entry(args[2].clone()).or_default();
        m.addr = Some(addr);
        m.quorum = quorum;
        m.line = d.line;
        Ok(())
    }

    /// `sentinel OPTION NAME VALUE` for a master declared by an earlier `sentinel monitor`.
    fn master_option(&mut self, d: &Directive<'_>) -> Result<(), ImportError> {
        let (sub, name, value) = (d.lower[1].as_str(), &d.args[2], &d.args[3]);
        let Some(m) = self.masters.get_mut(name) else {
            return Err(d.error(format!(
                "'{name}' is used before its `sentinel monitor` line"
            )));
        };
        match sub {
            "down-after-milliseconds" => m.down_after_ms = Some(d.num(3, sub)?),
            "failover-timeout" => m.failover_timeout_ms = Some(d.num(3, sub)?),
            "parallel-syncs" => m.parallel_syncs = Some(d.num(3, sub)? as u32),
            "auth-pass" => m.auth_pass = Some(value.clone()),
            "auth-user" => m.auth_user = Some(value.clone()),
            _ => {
                // notification-script or client-reconfig-script; empty clears it.
                let path = (!value.is_empty()).then(|| value.clone());
                if path.as_ref().is_some_and(|p| !p.starts_with('/')) {
                    return Err(d.error(format!("{sub} must be an absolute path")));
                }
                if sub == "notification-script" {
                    m.notification_script = path;
                } else {
                    m.client_reconfig_script = path;
                }
            }
        }
        Ok(())
    }
}

/// The node's own settings: top-level keys, `[listen]`, `[[peers]]`, `[raft]`, `[security]`.
fn write_node(out: &mut String, conf: &SentinelConf, target: &ImportTarget) {
    let host = conf.bind.as_deref().unwrap_or("0.0.0.0");
    let host = if host == "*" { "0.0.0.0" } else { host };
    let _ = writeln!(
        out,
        "# Converted from sentinel.conf by raft-sentinel import-sentinel-conf."
    );
    let _ = writeln!(out, "node_id = {}", target.node_id);
    let _ = writeln!(out, "data_dir = {}", toml_str(&target.data_dir));
    if let Some(d) = conf.deny_scripts_reconfig {
        let _ = writeln!(out, "deny_scripts_reconfig = {d}");
    }
    out.push('\n');
    let _ = writeln!(out, "[listen]");
    let _ = writeln!(
        out,
        "sentinel = {}",
        toml_str(&format!("{host}:{}", conf.port))
    );
    if let Some(ip) = &conf.announce_ip {
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
    if let Some(p) = &conf.requirepass {
        let _ = writeln!(out, "requirepass = {}", toml_str(p));
    }
    let _ = writeln!(
        out,
        "# Required beyond loopback (see the threat model in deploy/README.md): the same long\n\
         # random secret on every node, e.g. from `openssl rand -hex 32`, or `tls = {{ ... }}`.\n\
         # cluster_secret_file = \"/etc/raft-sentinel/cluster-secret\""
    );
    if conf.requirepass.is_none() {
        let _ = writeln!(
            out,
            "# The gRPC API password (ctl --password-file); requirepass serves when it is set.\n\
             # api_password_file = \"/etc/raft-sentinel/api-password\""
        );
    }
    out.push('\n');
}

/// One `[[masters]]` table; `nodes` is the number of coordinator nodes, the highest quorum.
fn write_master(out: &mut String, name: &str, m: &Master, nodes: usize) -> Result<(), ImportError> {
    let addr = m
        .addr
        .as_ref()
        .ok_or_else(|| ImportError::Invalid(format!("master '{name}' has no address")))?;
    if m.quorum as usize > nodes {
        return Err(ImportError::Line {
            line: m.line,
            problem: format!(
                "quorum {} of '{name}' is more than the {nodes} coordinator node(s) given: pass --peer for every node",
                m.quorum,
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
    let optional = [
        ("auth_user", &m.auth_user),
        ("auth_pass", &m.auth_pass),
        ("notification_script", &m.notification_script),
        ("client_reconfig_script", &m.client_reconfig_script),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            let _ = writeln!(out, "{key} = {}", toml_str(v));
        }
    }
    out.push('\n');
    Ok(())
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
