//! Configuration: a TOML file (unknown keys rejected) merged with command-line overrides,
//! validated up front into a [`Config`]. Errors name the key and the problem.
//!
//! [`Config::resolve`] is pure (text in, config out) so tests feed it strings.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::fsm::{MasterSpec, SpecField, SpecProblem, MAX_SCRIPT_LEN};
use crate::model::{Addr, NodeId};

/// Default ports (DESIGN §1).
pub const DEFAULT_SENTINEL: &str = "0.0.0.0:26379";
/// gRPC API.
pub const DEFAULT_GRPC: &str = "0.0.0.0:7700";
/// Raft peer port.
pub const DEFAULT_PEER: &str = "0.0.0.0:7701";
/// Metrics, health and readiness.
pub const DEFAULT_METRICS: &str = "0.0.0.0:9700";

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the TOML parser said (includes line and key).
        message: String,
    },
    /// A value is missing or wrong.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `peers[2].addr`.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Command-line overrides of the file (all optional).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// This node's id (overrides `node_id`).
    #[arg(long)]
    pub node_id: Option<NodeId>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A peer as ID=HOST:PORT; repeat for each (replaces `[[peers]]`).
    #[arg(long = "peer", value_name = "ID=HOST:PORT")]
    pub peers: Vec<PeerArg>,
    /// Sentinel-compatible RESP listen address.
    #[arg(long)]
    pub sentinel_listen: Option<String>,
    /// gRPC API listen address.
    #[arg(long)]
    pub grpc_listen: Option<String>,
    /// Raft peer listen address.
    #[arg(long)]
    pub peer_listen: Option<String>,
    /// Metrics/health listen address.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Address other nodes and clients should use for this node.
    #[arg(long)]
    pub announce_ip: Option<String>,
    /// Join an existing cluster (start empty and wait to be added or re-admitted); this is
    /// the default unless the configuration says the cluster is new.
    #[arg(long, conflicts_with = "bootstrap")]
    pub join: bool,
    /// The cluster is new: on an empty data dir, bootstrap it once every configured peer
    /// answers and none belongs to a formed cluster (`initial_cluster_state = "new"`).
    #[arg(long)]
    pub bootstrap: bool,
    /// Allow listening on a non-loopback peer or gRPC address with neither TLS nor a secret
    /// protecting it (anyone who reaches the port can then act on the cluster).
    #[arg(long)]
    pub insecure: bool,
}

/// A coordinator node given on the command line as `ID=HOST:PORT` (`--peer`): its id and
/// its peer port's address, both checked when the argument is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerArg {
    /// Node id, greater than 0.
    pub id: NodeId,
    /// `HOST:PORT` as given (a valid [`Addr`]).
    pub addr: String,
}

/// Why a `--peer` argument was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerArgError {
    /// No `=` between id and address.
    #[error("'{0}' is not ID=HOST:PORT (no '=')")]
    NoEquals(String),
    /// The id is not a number greater than 0.
    #[error("'{0}' is not a node id (a whole number greater than 0)")]
    BadId(String),
    /// The address is not `HOST:PORT`.
    #[error(transparent)]
    Addr(#[from] crate::model::AddrError),
}

impl std::str::FromStr for PeerArg {
    type Err = PeerArgError;

    fn from_str(s: &str) -> Result<PeerArg, PeerArgError> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| PeerArgError::NoEquals(s.to_string()))?;
        let id = id
            .parse::<NodeId>()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| PeerArgError::BadId(id.to_string()))?;
        addr.parse::<Addr>()?;
        Ok(PeerArg {
            id,
            addr: addr.to_string(),
        })
    }
}

impl std::fmt::Display for PeerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.id, self.addr)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<NodeId>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    listen: ListenFile,
    #[serde(default)]
    peers: Vec<PeerFile>,
    #[serde(default)]
    raft: RaftFile,
    #[serde(default)]
    security: SecurityFile,
    #[serde(default)]
    masters: Vec<MasterFile>,
    #[serde(default)]
    sentinel_port: SentinelPort,
    /// Refuse `SENTINEL SET` of script paths (Sentinel's `deny-scripts-reconfig`).
    deny_scripts_reconfig: Option<bool>,
    #[serde(default)]
    webhooks: Vec<WebhookFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    secret_file: Option<PathBuf>,
}

/// A URL that receives every committed event as JSON (`[[webhooks]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// As configured (`http://host:port/path`).
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// Request target (path and query).
    pub path: String,
    /// HMAC-SHA256 key for the `X-Raft-Sentinel-Signature` header (read from `secret_file`).
    pub secret: Option<String>,
}

impl Webhook {
    /// Parses an `http://` URL (TLS is not spoken; use a local relay for https).
    fn parse(url: &str) -> Result<Webhook, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty()
            || auth.contains('@')
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("expected http://host[:port]/path".into());
        }
        let authority = if auth
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        Ok(Webhook {
            url: url.to_string(),
            authority,
            path: path.to_string(),
            secret: None,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    sentinel: Option<String>,
    grpc: Option<String>,
    peer: Option<String>,
    metrics: Option<String>,
    announce_ip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    id: NodeId,
    addr: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RaftFile {
    tick_ms: u64,
    election_ticks: usize,
    heartbeat_ticks: usize,
    cluster_id: String,
    compact_threshold: u64,
    join: bool,
    initial_cluster_state: Option<String>,
}

impl Default for RaftFile {
    fn default() -> Self {
        RaftFile {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            cluster_id: "raft-sentinel".into(),
            compact_threshold: 1000,
            join: false,
            initial_cluster_state: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityFile {
    requirepass: Option<String>,
    /// File holding the password (a mounted secret); read by `Config::load`.
    requirepass_file: Option<PathBuf>,
    /// Credential of the gRPC API (default: requirepass).
    api_password: Option<String>,
    /// File holding `api_password`.
    api_password_file: Option<PathBuf>,
    /// Read-only RPCs without a credential.
    #[serde(default)]
    api_open_reads: bool,
    /// File holding the secret every node shares to authenticate peer-port traffic.
    cluster_secret_file: Option<PathBuf>,
    tls: Option<TlsFile>,
    redis_tls: Option<RedisTlsFile>,
    sentinel_tls: Option<SentinelTlsFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SentinelTlsFile {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisTlsFile {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterFile {
    name: String,
    addr: String,
    quorum: u32,
    #[serde(default = "default_down_after")]
    down_after_ms: u64,
    #[serde(default = "default_failover_timeout")]
    failover_timeout_ms: u64,
    #[serde(default = "default_parallel_syncs")]
    parallel_syncs: u32,
    auth_user: Option<String>,
    auth_pass: Option<String>,
    /// File holding `auth_pass` (a mounted secret); read by `Config::load`.
    auth_pass_file: Option<PathBuf>,
    #[serde(default)]
    tls: bool,
    notification_script: Option<String>,
    client_reconfig_script: Option<String>,
}

fn default_down_after() -> u64 {
    MasterSpec::DEFAULT_DOWN_AFTER_MS
}
fn default_failover_timeout() -> u64 {
    MasterSpec::DEFAULT_FAILOVER_TIMEOUT_MS
}
fn default_parallel_syncs() -> u32 {
    MasterSpec::DEFAULT_PARALLEL_SYNCS
}

/// The files of one of `[security]`'s TLS tables: `tls` (gRPC and peer ports, mutual TLS:
/// all three files), `sentinel_tls` (cert and key, and a CA when clients must present a
/// certificate) or `redis_tls` (a CA, else the system roots; cert and key when the servers
/// require a client certificate). Which files a table requires is checked when the config
/// is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The table (`security.tls`), naming the keys in errors.
    pub table: &'static str,
    /// PEM certificate chain and private key this node presents.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// PEM CA the other side's certificate must chain to.
    pub ca: Option<PathBuf>,
}

/// PEM contents of [`TlsFiles`].
#[derive(Clone, Debug)]
pub struct TlsPem {
    /// The table the files come from.
    pub table: &'static str,
    /// Certificate chain and private key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// CA certificate(s).
    pub ca: Option<Vec<u8>>,
}

impl TlsFiles {
    /// Reads the files (cert, key, then ca), checking each holds PEM data.
    pub fn load(&self) -> Result<TlsPem, ConfigError> {
        let read = |k: &str, p: &Path| read_pem(&format!("{}.{k}", self.table), p);
        let identity = match &self.identity {
            Some((cert, key)) => Some((read("cert", cert)?, read("key", key)?)),
            None => None,
        };
        let ca = self.ca.as_deref().map(|p| read("ca", p)).transpose()?;
        Ok(TlsPem {
            table: self.table,
            identity,
            ca,
        })
    }
}

/// Certificate chain, private key and CA (PEM) of mutual TLS.
pub type MutualPem = (Vec<u8>, Vec<u8>, Vec<u8>);

impl TlsPem {
    /// Certificate, key and CA, for mutual TLS. The table that needs them cannot be parsed
    /// without them; should one still be missing, this is an error, never plain text.
    pub fn mutual(self) -> Result<MutualPem, ConfigError> {
        let missing = |k: &str| invalid(format!("{}.{k}", self.table), "missing");
        let (cert, key) = self.identity.ok_or_else(|| missing("cert"))?;
        let ca = self.ca.ok_or_else(|| missing("ca"))?;
        Ok((cert, key, ca))
    }
}

/// Reads a PEM file for config key `key`, with a clear error when it is missing or not PEM.
pub fn read_pem(key: &str, p: &Path) -> Result<Vec<u8>, ConfigError> {
    let b =
        std::fs::read(p).map_err(|e| invalid(key, format!("cannot read {}: {e}", p.display())))?;
    if !String::from_utf8_lossy(&b).contains("-----BEGIN ") {
        return Err(invalid(key, format!("{} is not a PEM file", p.display())));
    }
    Ok(b)
}

/// Listen addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Sentinel-compatible RESP port.
    pub sentinel: SocketAddr,
    /// gRPC API.
    pub grpc: SocketAddr,
    /// Raft peer port.
    pub peer: SocketAddr,
    /// Metrics, health, readiness.
    pub metrics: SocketAddr,
    /// Address to announce instead of the listen address.
    pub announce_ip: Option<String>,
}

/// Raft timing and log settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftSettings {
    /// Tick interval.
    pub tick: Duration,
    /// Ticks before an election.
    pub election_ticks: usize,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: usize,
    /// Cluster identity checked on every peer message.
    pub cluster_id: String,
    /// Log entries kept before compaction.
    pub compact_threshold: u64,
    /// What a node on an empty data dir does.
    pub initial_cluster_state: InitialClusterState,
}

/// What a node that starts on an empty data dir does (as etcd's `--initial-cluster-state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialClusterState {
    /// The cluster is being formed: bootstrap it, unless a configured peer belongs to a
    /// formed cluster (then this node lost its data or was never a member: it waits).
    New,
    /// The cluster exists: wait to be added (`ctl add-node`) or re-admitted
    /// (`ctl replace-node`), without voting until then.
    #[default]
    Existing,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub node_id: NodeId,
    /// Where the Raft log and state live.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: Listen,
    /// Every voting node (this one included), id → peer address.
    pub peers: BTreeMap<NodeId, String>,
    /// Raft settings.
    pub raft: RaftSettings,
    /// Password clients of the Sentinel port must AUTH with.
    pub requirepass: Option<String>,
    /// Credential of the gRPC API when it differs from `requirepass`.
    pub api_password: Option<String>,
    /// Read-only RPCs are answered without a credential.
    pub api_open_reads: bool,
    /// Secret shared by every node, authenticating peer-port traffic.
    pub cluster_secret: Option<String>,
    /// Started with `--insecure`: exposed ports without TLS or a secret are only warned about.
    pub insecure: bool,
    /// TLS for gRPC and peer ports (`security.tls`: cert, key and ca).
    pub tls: Option<TlsFiles>,
    /// TLS material for Redis connections (`security.redis_tls`).
    pub redis_tls: Option<TlsFiles>,
    /// TLS on the Sentinel port (`security.sentinel_tls`): certificate, key, and optionally a
    /// CA clients must present a certificate from.
    pub sentinel_tls: Option<TlsFiles>,
    /// Masters proposed when the cluster first forms.
    pub masters: Vec<MasterSpec>,
    /// Connection and buffer limits of the Sentinel port (`[sentinel_port]`).
    pub sentinel_port: SentinelPort,
    /// Secret files to read at load: (config key, path, what to fill).
    pub secret_files: Vec<(String, PathBuf, SecretTarget)>,
    /// `SENTINEL SET` of script paths is refused on this node (default true, as Sentinel).
    pub deny_scripts_reconfig: bool,
    /// `[[webhooks]]`.
    pub webhooks: Vec<Webhook>,
}

/// Connection and buffer limits of the Sentinel port (`[sentinel_port]`). Sizes are bytes,
/// times seconds, 0 turns a timeout off. The defaults hold a node well inside a 256 MiB
/// memory limit whatever its clients send.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelPort {
    /// Connections served at once; more get `-ERR max number of clients reached`.
    pub max_connections: usize,
    /// Largest request an authenticated connection may buffer (Redis's
    /// `client-query-buffer-limit`); over it the connection is closed.
    pub max_request_bytes: usize,
    /// The same before AUTH (only with `requirepass`).
    pub unauth_max_request_bytes: usize,
    /// Input and output buffered by all connections together. Over it, new connections get
    /// an error and the connections holding the largest buffers are closed first.
    pub buffer_budget_bytes: usize,
    /// Close connections idle this long (Redis `timeout`; 0 = never, as in Sentinel, whose
    /// clients keep idle connections). Never applies to Pub/Sub clients.
    pub idle_timeout_secs: u64,
    /// Close a connection that has not authenticated within this long (with `requirepass`).
    pub unauth_idle_timeout_secs: u64,
    /// A request must arrive whole within this long of its first byte (slow-client defence).
    pub request_timeout_secs: u64,
    /// A client that takes none of its pending replies for this long is closed.
    pub write_timeout_secs: u64,
    /// Pub/Sub output limit (Redis's `client-output-buffer-limit pubsub`): a subscriber with
    /// more than this many bytes of events not yet taken is closed at once ...
    pub pubsub_hard_limit_bytes: usize,
    /// ... and one above this for `pubsub_soft_limit_secs` in a row is closed too.
    pub pubsub_soft_limit_bytes: usize,
    /// See `pubsub_soft_limit_bytes`.
    pub pubsub_soft_limit_secs: u64,
    /// Threads serving the port's connections (1 by default, like Sentinel's event loop: a
    /// short request then costs the fewest context switches; more help only TLS handshakes
    /// and very many busy clients).
    pub threads: usize,
}

impl Default for SentinelPort {
    fn default() -> Self {
        SentinelPort {
            max_connections: 10_000,
            max_request_bytes: 1024 * 1024,
            unauth_max_request_bytes: 16 * 1024,
            buffer_budget_bytes: 64 * 1024 * 1024,
            idle_timeout_secs: 0,
            unauth_idle_timeout_secs: 10,
            request_timeout_secs: 10,
            write_timeout_secs: 30,
            pubsub_hard_limit_bytes: 8 * 1024 * 1024,
            pubsub_soft_limit_bytes: 2 * 1024 * 1024,
            pubsub_soft_limit_secs: 60,
            threads: 1,
        }
    }
}

impl SentinelPort {
    fn validated(self) -> Result<SentinelPort, ConfigError> {
        let key = |k: &str| format!("sentinel_port.{k}");
        if self.max_connections == 0 {
            return Err(invalid(key("max_connections"), "must be at least 1"));
        }
        if self.max_request_bytes < 1024 {
            return Err(invalid(key("max_request_bytes"), "must be at least 1024"));
        }
        if self.unauth_max_request_bytes < 256
            || self.unauth_max_request_bytes > self.max_request_bytes
        {
            return Err(invalid(
                key("unauth_max_request_bytes"),
                "must be between 256 and max_request_bytes",
            ));
        }
        if self.buffer_budget_bytes < self.max_request_bytes {
            return Err(invalid(
                key("buffer_budget_bytes"),
                "must be at least max_request_bytes",
            ));
        }
        if self.write_timeout_secs == 0 {
            return Err(invalid(key("write_timeout_secs"), "must be at least 1"));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(invalid(key("threads"), "must be between 1 and 64"));
        }
        if self.pubsub_soft_limit_bytes > self.pubsub_hard_limit_bytes {
            return Err(invalid(
                key("pubsub_soft_limit_bytes"),
                "must not exceed pubsub_hard_limit_bytes",
            ));
        }
        Ok(self)
    }
}

/// Which value a secret file fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretTarget {
    /// `security.requirepass`.
    Requirepass,
    /// `auth_pass` of the master at this index.
    MasterAuthPass(usize),
    /// `security.api_password`.
    ApiPassword,
    /// The cluster secret.
    ClusterSecret,
    /// The HMAC key of the webhook at this index.
    WebhookSecret(usize),
}

/// Shortest accepted cluster secret: it stands between the network and the Raft log.
pub const MIN_CLUSTER_SECRET: usize = 16;

impl Config {
    /// Reads `path` and resolves it with the overrides; also checks that TLS files exist and
    /// hold PEM data, so a wrong path is a configuration error before any port is bound.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::resolve(&path.display().to_string(), &text, overrides)?;
        for t in [&cfg.tls, &cfg.redis_tls, &cfg.sentinel_tls]
            .into_iter()
            .flatten()
        {
            t.load()?;
        }
        for (key, file, target) in cfg.secret_files.clone() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(&key, format!("cannot read {}: {e}", file.display())))?;
            // Secret files usually end with a newline that is not part of the secret.
            let secret = text.trim_end_matches(['\r', '\n']).to_string();
            if secret.is_empty() {
                return Err(invalid(&key, format!("{} is empty", file.display())));
            }
            match target {
                SecretTarget::Requirepass => cfg.requirepass = Some(secret),
                SecretTarget::MasterAuthPass(i) => {
                    let max = crate::fsm::limits::MAX_SECRET_LEN;
                    if secret.len() > max {
                        return Err(invalid(&key, format!("holds more than {max} bytes")));
                    }
                    cfg.masters[i].auth_pass = Some(secret)
                }
                SecretTarget::ApiPassword => cfg.api_password = Some(secret),
                SecretTarget::WebhookSecret(i) => cfg.webhooks[i].secret = Some(secret),
                SecretTarget::ClusterSecret => {
                    if secret.len() < MIN_CLUSTER_SECRET {
                        return Err(invalid(
                            &key,
                            format!(
                                "{} holds fewer than {MIN_CLUSTER_SECRET} bytes: use a long random secret (e.g. openssl rand -hex 32)",
                                file.display()
                            ),
                        ));
                    }
                    cfg.cluster_secret = Some(secret)
                }
            }
        }
        if !cfg.insecure {
            if let Some((key, problem)) = cfg.exposed().into_iter().next() {
                return Err(invalid(
                    key,
                    format!("{problem}; start with --insecure to accept that"),
                ));
            }
        }
        Ok(cfg)
    }

    /// The credential the gRPC API requires: `api_password`, else `requirepass`.
    pub fn api_credential(&self) -> Option<&str> {
        self.api_password.as_deref().or(self.requirepass.as_deref())
    }

    /// Ports reachable from other hosts with nothing authenticating who uses them: the peer port
    /// without TLS or a cluster secret, the API without TLS or a credential. A node refuses to
    /// start with any of these unless started with `--insecure`.
    pub fn exposed(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.tls.is_some() {
            return out;
        }
        if !self.listen.peer.ip().is_loopback() && self.cluster_secret.is_none() {
            out.push((
                "listen.peer",
                format!(
                    "{} is not a loopback address and neither [security] tls nor cluster_secret_file is set: anyone who reaches the peer port could forge Raft messages",
                    self.listen.peer
                ),
            ));
        }
        if !self.listen.grpc.ip().is_loopback() && self.api_credential().is_none() {
            out.push((
                "listen.grpc",
                format!(
                    "{} is not a loopback address and neither [security] tls nor api_password(_file) nor requirepass(_file) is set: anyone who reaches the gRPC API could fail masters over",
                    self.listen.grpc
                ),
            ));
        }
        out
    }

    /// Parses, merges and validates. Pure.
    pub fn resolve(origin: &str, text: &str, o: &Overrides) -> Result<Config, ConfigError> {
        let f: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let (node_id, data_dir) = resolve_identity(f.node_id, f.data_dir, o)?;
        let listen = resolve_listen(f.listen, o)?;
        let peers = resolve_peers(&f.peers, o, node_id)?;
        let raft = resolve_raft(f.raft, o)?;
        let mut secret_files = Vec::new();
        let security = resolve_security(f.security, &mut secret_files)?;
        let masters = resolve_masters(f.masters, peers.len(), &mut secret_files)?;
        let webhooks = resolve_webhooks(f.webhooks, &mut secret_files)?;
        let cfg = Config {
            node_id,
            data_dir,
            listen,
            peers,
            raft,
            requirepass: security.requirepass,
            api_password: security.api_password,
            api_open_reads: security.api_open_reads,
            cluster_secret: None,
            insecure: o.insecure,
            tls: security.tls,
            redis_tls: security.redis_tls,
            sentinel_tls: security.sentinel_tls,
            masters,
            sentinel_port: f.sentinel_port.validated()?,
            secret_files,
            deny_scripts_reconfig: f.deny_scripts_reconfig.unwrap_or(true),
            webhooks,
        };
        cfg.raft_config()
            .validate()
            .map_err(|e| invalid("raft", e.to_string()))?;
        Ok(cfg)
    }

    /// The raft-rs config these settings give (checked by `validate`).
    pub fn raft_config(&self) -> raft::Config {
        raft::Config {
            id: self.node_id,
            election_tick: self.raft.election_ticks,
            heartbeat_tick: self.raft.heartbeat_ticks,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        }
    }

    /// The address others should use for a port of this node: `announce_ip`, else the listen
    /// IP, else (listening on all interfaces) the host of this node's peer address.
    pub fn advertised(&self, listen: SocketAddr) -> String {
        let mut a = self.unannounced(listen);
        if let Some(ip) = &self.listen.announce_ip {
            a.host = ip.clone();
        }
        a.to_string()
    }

    /// The address of a port of this node without `announce_ip`: the listen IP, else
    /// (listening on all interfaces) the host of this node's peer address.
    pub fn unannounced(&self, listen: SocketAddr) -> Addr {
        let host = if !listen.ip().is_unspecified() {
            listen.ip().to_string()
        } else {
            self.peers
                .get(&self.node_id)
                .and_then(|a| a.parse::<Addr>().ok())
                .map(|a| a.host)
                .unwrap_or_else(|| "127.0.0.1".into())
        };
        Addr {
            host,
            port: listen.port(),
        }
    }
}

fn socket(key: &str, v: Option<&String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let s = v.map(String::as_str).unwrap_or(default);
    s.parse()
        .map_err(|_| invalid(key, format!("'{s}' is not an IP:PORT listen address")))
}

/// `node_id` and `data_dir`, each from the command line or else the file.
fn resolve_identity(
    node_id: Option<NodeId>,
    data_dir: Option<PathBuf>,
    o: &Overrides,
) -> Result<(NodeId, PathBuf), ConfigError> {
    let node_id = o
        .node_id
        .or(node_id)
        .ok_or_else(|| invalid("node_id", "missing (set it in the file or with --node-id)"))?;
    if node_id == 0 {
        return Err(invalid("node_id", "must be greater than 0"));
    }
    let data_dir = o.data_dir.clone().or(data_dir).ok_or_else(|| {
        invalid(
            "data_dir",
            "missing (set it in the file or with --data-dir)",
        )
    })?;
    if data_dir.as_os_str().is_empty() {
        return Err(invalid("data_dir", "must not be empty"));
    }
    Ok((node_id, data_dir))
}

/// `[listen]`: four distinct listen addresses and the announced host.
fn resolve_listen(l: ListenFile, o: &Overrides) -> Result<Listen, ConfigError> {
    let pick = |cli: &Option<String>, file: Option<String>| cli.clone().or(file);
    let listen = Listen {
        sentinel: socket(
            "listen.sentinel",
            pick(&o.sentinel_listen, l.sentinel).as_ref(),
            DEFAULT_SENTINEL,
        )?,
        grpc: socket(
            "listen.grpc",
            pick(&o.grpc_listen, l.grpc).as_ref(),
            DEFAULT_GRPC,
        )?,
        peer: socket(
            "listen.peer",
            pick(&o.peer_listen, l.peer).as_ref(),
            DEFAULT_PEER,
        )?,
        metrics: socket(
            "listen.metrics",
            pick(&o.metrics_listen, l.metrics).as_ref(),
            DEFAULT_METRICS,
        )?,
        announce_ip: pick(&o.announce_ip, l.announce_ip),
    };
    if let Some(ip) = &listen.announce_ip {
        if ip.is_empty()
            || ip.contains(char::is_whitespace)
            || ip.contains(':') && ip.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(invalid(
                "listen.announce_ip",
                format!("'{ip}' is not a host name or IP address"),
            ));
        }
    }
    let ports = [
        ("listen.sentinel", listen.sentinel),
        ("listen.grpc", listen.grpc),
        ("listen.peer", listen.peer),
        ("listen.metrics", listen.metrics),
    ];
    for (i, (ka, a)) in ports.iter().enumerate() {
        for (kb, b) in &ports[i + 1..] {
            if a.port() != 0 && a == b {
                return Err(invalid(*kb, format!("{b} is already used by {ka}")));
            }
        }
    }
    Ok(listen)
}

/// `[[peers]]`, or the `--peer` flags that replace them (checked as they were parsed): every
/// voter, this node included, with distinct ids and addresses.
fn resolve_peers(
    file: &[PeerFile],
    o: &Overrides,
    node_id: NodeId,
) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let raw_peers: Vec<(String, NodeId, String)> = if o.peers.is_empty() {
        file.iter()
            .enumerate()
            .map(|(i, p)| (format!("peers[{i}]"), p.id, p.addr.clone()))
            .collect()
    } else {
        o.peers
            .iter()
            .map(|p| (format!("--peer {p}"), p.id, p.addr.clone()))
            .collect()
    };
    if raw_peers.is_empty() {
        return Err(invalid(
            "peers",
            "no peers: list every voting node, this one included",
        ));
    }
    let mut peers = BTreeMap::new();
    let mut addrs = BTreeSet::new();
    for (key, id, addr) in raw_peers {
        if id == 0 {
            return Err(invalid(format!("{key}.id"), "must be greater than 0"));
        }
        addr.parse::<Addr>()
            .map_err(|e| invalid(format!("{key}.addr"), e.to_string()))?;
        if peers.insert(id, addr.clone()).is_some() {
            return Err(invalid(
                format!("{key}.id"),
                format!("duplicate node id {id}"),
            ));
        }
        if !addrs.insert(addr.clone()) {
            return Err(invalid(
                format!("{key}.addr"),
                format!("duplicate address {addr}"),
            ));
        }
    }
    if !peers.contains_key(&node_id) {
        return Err(invalid(
            "peers",
            format!("this node (node_id = {node_id}) is missing from peers"),
        ));
    }
    Ok(peers)
}

/// `[raft]`, with `--bootstrap` / `--join` deciding the initial cluster state.
fn resolve_raft(r: RaftFile, o: &Overrides) -> Result<RaftSettings, ConfigError> {
    if r.tick_ms == 0 || r.tick_ms > 10_000 {
        return Err(invalid("raft.tick_ms", "must be between 1 and 10000"));
    }
    if r.heartbeat_ticks == 0 {
        return Err(invalid("raft.heartbeat_ticks", "must be greater than 0"));
    }
    if r.election_ticks <= r.heartbeat_ticks {
        return Err(invalid(
            "raft.election_ticks",
            format!(
                "must be greater than heartbeat_ticks ({})",
                r.heartbeat_ticks
            ),
        ));
    }
    if r.cluster_id.is_empty() || r.cluster_id.len() > 128 {
        return Err(invalid("raft.cluster_id", "must be 1 to 128 characters"));
    }
    if r.compact_threshold < 2 {
        return Err(invalid("raft.compact_threshold", "must be at least 2"));
    }
    let mut initial = match r.initial_cluster_state.as_deref() {
        None | Some("existing") => InitialClusterState::Existing,
        Some("new") => InitialClusterState::New,
        Some(other) => {
            return Err(invalid(
                "raft.initial_cluster_state",
                format!("'{other}' is neither \"new\" nor \"existing\""),
            ))
        }
    };
    if r.join && initial == InitialClusterState::New {
        return Err(invalid(
            "raft.join",
            "contradicts initial_cluster_state = \"new\" (leave join out)",
        ));
    }
    if o.bootstrap {
        initial = InitialClusterState::New;
    }
    if o.join {
        initial = InitialClusterState::Existing;
    }
    Ok(RaftSettings {
        tick: Duration::from_millis(r.tick_ms),
        election_ticks: r.election_ticks,
        heartbeat_ticks: r.heartbeat_ticks,
        cluster_id: r.cluster_id,
        compact_threshold: r.compact_threshold,
        initial_cluster_state: initial,
    })
}

/// `[security]` resolved: the secrets given inline and the TLS files (secret files are
/// recorded for `Config::load` to read).
struct Security {
    requirepass: Option<String>,
    api_password: Option<String>,
    api_open_reads: bool,
    tls: Option<TlsFiles>,
    redis_tls: Option<TlsFiles>,
    sentinel_tls: Option<TlsFiles>,
}

/// `[security]`: a secret is given inline or as a file, never both.
fn resolve_security(
    s: SecurityFile,
    secret_files: &mut Vec<(String, PathBuf, SecretTarget)>,
) -> Result<Security, ConfigError> {
    secret_choice(
        "security.requirepass",
        s.requirepass.as_deref(),
        "must not be empty (leave it out to disable)",
        s.requirepass_file,
        "set requirepass or requirepass_file, not both",
        SecretTarget::Requirepass,
        secret_files,
    )?;
    secret_choice(
        "security.api_password",
        s.api_password.as_deref(),
        "must not be empty (leave it out to use requirepass)",
        s.api_password_file,
        "set api_password or api_password_file, not both",
        SecretTarget::ApiPassword,
        secret_files,
    )?;
    if let Some(path) = s.cluster_secret_file {
        secret_files.push((
            "security.cluster_secret_file".to_string(),
            path,
            SecretTarget::ClusterSecret,
        ));
    }
    let redis_tls = match s.redis_tls {
        None => None,
        Some(t) => Some(TlsFiles {
            table: "security.redis_tls",
            identity: match (t.cert, t.key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "security.redis_tls",
                        "cert and key must be given together",
                    ))
                }
            },
            ca: t.ca,
        }),
    };
    Ok(Security {
        requirepass: s.requirepass,
        api_password: s.api_password,
        api_open_reads: s.api_open_reads,
        tls: s.tls.map(|t| TlsFiles {
            table: "security.tls",
            identity: Some((t.cert, t.key)),
            ca: Some(t.ca),
        }),
        redis_tls,
        sentinel_tls: s.sentinel_tls.map(|t| TlsFiles {
            table: "security.sentinel_tls",
            identity: Some((t.cert, t.key)),
            ca: t.ca,
        }),
    })
}

/// A secret set inline as `key` (not empty) or in the file `{key}_file`, not both; the file
/// is recorded in `secret_files`.
fn secret_choice(
    key: &str,
    inline: Option<&str>,
    empty: &str,
    file: Option<PathBuf>,
    both: &str,
    target: SecretTarget,
    secret_files: &mut Vec<(String, PathBuf, SecretTarget)>,
) -> Result<(), ConfigError> {
    if inline.is_some_and(str::is_empty) {
        return Err(invalid(key, empty));
    }
    if let Some(path) = file {
        let file_key = format!("{key}_file");
        if inline.is_some() {
            return Err(invalid(file_key, both));
        }
        secret_files.push((file_key, path, target));
    }
    Ok(())
}

/// `[[masters]]`: at most the replicated state's number, distinct names.
fn resolve_masters(
    file: Vec<MasterFile>,
    voters: usize,
    secret_files: &mut Vec<(String, PathBuf, SecretTarget)>,
) -> Result<Vec<MasterSpec>, ConfigError> {
    if file.len() > crate::fsm::limits::MAX_MASTERS {
        return Err(invalid(
            "masters",
            format!(
                "{} masters; at most {} are monitored by one cluster",
                file.len(),
                crate::fsm::limits::MAX_MASTERS
            ),
        ));
    }
    let mut masters: Vec<MasterSpec> = Vec::new();
    for (i, m) in file.into_iter().enumerate() {
        let spec = resolve_master(i, m, voters, secret_files)?;
        if masters.iter().any(|s| s.name == spec.name) {
            return Err(invalid(
                format!("masters[{i}].name"),
                format!("duplicate master name '{}'", spec.name),
            ));
        }
        masters.push(spec);
    }
    Ok(masters)
}

/// One `[[masters]]` entry: the state machine's rules for a monitored master
/// (`fsm::check_spec`, with the replicated state's limits in force, since a cluster may apply
/// the bootstrap entry before its version enforces them), and a quorum the voters can reach.
fn resolve_master(
    i: usize,
    m: MasterFile,
    voters: usize,
    secret_files: &mut Vec<(String, PathBuf, SecretTarget)>,
) -> Result<MasterSpec, ConfigError> {
    let key = |k: &str| format!("masters[{i}].{k}");
    let addr: Addr = m
        .addr
        .parse()
        .map_err(|e: crate::model::AddrError| invalid(key("addr"), e.to_string()))?;
    if let Some(path) = m.auth_pass_file {
        if m.auth_pass.is_some() {
            return Err(invalid(
                key("auth_pass_file"),
                "set auth_pass or auth_pass_file, not both",
            ));
        }
        secret_files.push((key("auth_pass_file"), path, SecretTarget::MasterAuthPass(i)));
    }
    let spec = MasterSpec {
        name: m.name,
        addr,
        quorum: m.quorum,
        down_after_ms: m.down_after_ms,
        failover_timeout_ms: m.failover_timeout_ms,
        parallel_syncs: m.parallel_syncs,
        auth_user: m.auth_user.filter(|u| !u.is_empty()),
        auth_pass: m.auth_pass.filter(|p| !p.is_empty()),
        tls: m.tls,
        notification_script: m.notification_script.filter(|s| !s.is_empty()),
        client_reconfig_script: m.client_reconfig_script.filter(|s| !s.is_empty()),
    };
    let enforced = crate::fsm::limits::Limits::at(crate::fsm::limits::BOUNDED_STATE_VERSION);
    crate::fsm::check_spec(&spec, enforced).map_err(|p| spec_problem(i, p))?;
    if spec.quorum as usize > voters {
        return Err(invalid(
            key("quorum"),
            format!(
                "{} is more than the {voters} coordinator nodes: the master could never be seen down",
                spec.quorum
            ),
        ));
    }
    Ok(spec)
}

/// A broken master rule worded for the config file, naming the key of master `i`.
fn spec_problem(i: usize, p: SpecProblem) -> ConfigError {
    let key = |f: SpecField| {
        let k = match f {
            SpecField::Name => "name",
            SpecField::Addr => "addr",
            SpecField::AuthUser => "auth_user",
            SpecField::AuthPass => "auth_pass",
            SpecField::Quorum => "quorum",
            SpecField::DownAfter => "down_after_ms",
            SpecField::FailoverTimeout => "failover_timeout_ms",
            SpecField::ParallelSyncs => "parallel_syncs",
            SpecField::NotificationScript => "notification_script",
            SpecField::ClientReconfigScript => "client_reconfig_script",
        };
        format!("masters[{i}].{k}")
    };
    let host = || {
        format!(
            "host longer than {} bytes or with a quote or backslash",
            crate::fsm::limits::MAX_NAME_LEN
        )
    };
    match p {
        SpecProblem::Script { field, path } if path.len() > MAX_SCRIPT_LEN => {
            invalid(key(field), format!("longer than {MAX_SCRIPT_LEN} bytes"))
        }
        SpecProblem::Script { field, .. } => invalid(key(field), "must be an absolute path"),
        SpecProblem::TooLong {
            field: SpecField::Addr,
            ..
        }
        | SpecProblem::HostQuote => invalid(key(SpecField::Addr), host()),
        SpecProblem::TooLong { field, max, .. } => {
            invalid(key(field), format!("longer than {max} bytes"))
        }
        SpecProblem::BadName => invalid(key(SpecField::Name), "must be non-empty without spaces"),
        SpecProblem::Zero(SpecField::Quorum) => {
            invalid(key(SpecField::Quorum), "must be 1 or greater")
        }
        SpecProblem::Zero(field) => invalid(key(field), "must be greater than 0"),
    }
}

/// `[[webhooks]]`: URLs and their HMAC key files.
fn resolve_webhooks(
    file: Vec<WebhookFile>,
    secret_files: &mut Vec<(String, PathBuf, SecretTarget)>,
) -> Result<Vec<Webhook>, ConfigError> {
    let mut webhooks = Vec::new();
    for (i, w) in file.into_iter().enumerate() {
        let key = |k: &str| format!("webhooks[{i}].{k}");
        webhooks.push(Webhook::parse(&w.url).map_err(|e| invalid(key("url"), e))?);
        if let Some(p) = w.secret_file {
            secret_files.push((key("secret_file"), p, SecretTarget::WebhookSecret(i)));
        }
    }
    Ok(webhooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
data_dir = "/tmp/x"
[listen]
sentinel = "127.0.0.1:26379"
[[peers]]
id = 1
addr = "127.0.0.1:7701"
[[peers]]
id = 2
addr = "127.0.0.2:7701"
[[peers]]
id = 3
addr = "127.0.0.3:7701"
[[masters]]
name = "mymaster"
addr = "127.0.0.1:6379"
quorum = 2
"#;

    fn resolve(text: &str) -> Result<Config, ConfigError> {
        Config::resolve("test.toml", text, &Overrides::default())
    }

    fn err(text: &str) -> String {
        resolve(text).unwrap_err().to_string()
    }

    #[test]
    fn good_config_and_defaults() {
        let c = resolve(GOOD).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.raft.tick, Duration::from_millis(100));
        assert_eq!(c.listen.grpc, "0.0.0.0:7700".parse().unwrap());
        assert_eq!(c.masters[0].down_after_ms, 5000);
        assert_eq!(c.masters[0].failover_timeout_ms, 60000);
        assert_eq!(c.advertised(c.listen.grpc), "127.0.0.1:7700");
        assert_eq!(c.advertised(c.listen.sentinel), "127.0.0.1:26379");
    }

    #[test]
    fn initial_cluster_state_is_existing_unless_said_new() {
        assert_eq!(
            resolve(GOOD).unwrap().raft.initial_cluster_state,
            InitialClusterState::Existing
        );
        let new = format!("{GOOD}\n[raft]\ninitial_cluster_state = \"new\"\n");
        assert_eq!(
            resolve(&new).unwrap().raft.initial_cluster_state,
            InitialClusterState::New
        );
        let o = Overrides {
            bootstrap: true,
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve("t", GOOD, &o)
                .unwrap()
                .raft
                .initial_cluster_state,
            InitialClusterState::New
        );
        let o = Overrides {
            join: true,
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve("t", &new, &o)
                .unwrap()
                .raft
                .initial_cluster_state,
            InitialClusterState::Existing
        );
        let e = err(&format!(
            "{GOOD}\n[raft]\ninitial_cluster_state = \"fresh\"\n"
        ));
        assert!(e.contains("raft.initial_cluster_state"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[raft]\ninitial_cluster_state = \"new\"\njoin = true\n"
        ));
        assert!(e.contains("raft.join"), "{e}");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            node_id: Some(2),
            data_dir: Some("/tmp/y".into()),
            grpc_listen: Some("127.0.0.1:1".into()),
            ..Overrides::default()
        };
        let c = Config::resolve("t", GOOD, &o).unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.listen.grpc.port(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = err(&format!("{GOOD}\nbogus = 1\n"));
        assert!(e.contains("bogus"), "{e}");
        let e = err(&GOOD.replace("quorum = 2", "quorum = 2\nqourum = 3"));
        assert!(e.contains("qourum"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (GOOD.replace("id = 2", "id = 1"), "duplicate node id 1"),
            (
                GOOD.replace("node_id = 1", "node_id = 9"),
                "missing from peers",
            ),
            (GOOD.replace("node_id = 1", "node_id = 0"), "node_id"),
            (
                GOOD.replace("\"127.0.0.2:7701\"", "\"nohost\""),
                "peers[1].addr",
            ),
            (
                GOOD.replace("quorum = 2", "quorum = 0"),
                "masters[0].quorum",
            ),
            (GOOD.replace("quorum = 2", "quorum = 4"), "more than the 3"),
            // The replicated state's limits (fsm::limits).
            (
                GOOD.replace(
                    "name = \"mymaster\"",
                    &format!("name = \"{}\"", "n".repeat(257)),
                ),
                "masters[0].name",
            ),
            (
                GOOD.replace(
                    "quorum = 2",
                    &format!("quorum = 2\nauth_pass = \"{}\"", "p".repeat(513)),
                ),
                "masters[0].auth_pass",
            ),
            (
                format!(
                    "{GOOD}{}",
                    (0..256)
                        .map(|i| format!(
                            "\n[[masters]]\nname = \"m{i}\"\naddr = \"h:1\"\nquorum = 1\n"
                        ))
                        .collect::<String>()
                ),
                "at most 256",
            ),
            (
                GOOD.replace("\"127.0.0.1:26379\"", "\"localhost\""),
                "listen.sentinel",
            ),
            (
                GOOD.replace("\"127.0.0.1:6379\"", "\"127.0.0.1:0\""),
                "masters[0].addr",
            ),
            (
                format!("{GOOD}\n[raft]\nelection_ticks = 2\n"),
                "raft.election_ticks",
            ),
            (format!("{GOOD}\n[raft]\ntick_ms = 0\n"), "raft.tick_ms"),
            (GOOD.replace("data_dir = \"/tmp/x\"", ""), "data_dir"),
            (
                format!("{GOOD}\n[[masters]]\nname = \"mymaster\"\naddr = \"h:1\"\nquorum = 1\n"),
                "duplicate master name",
            ),
            ("node_id = \"one\"".to_string(), "test.toml"),
            (
                format!("{GOOD}\n[sentinel_port]\nmax_connections = 0\n"),
                "sentinel_port.max_connections",
            ),
            (
                format!("{GOOD}\n[sentinel_port]\nunauth_max_request_bytes = 2000000\n"),
                "sentinel_port.unauth_max_request_bytes",
            ),
            (
                format!("{GOOD}\n[sentinel_port]\nbuffer_budget_bytes = 2048\n"),
                "sentinel_port.buffer_budget_bytes",
            ),
            (
                format!("{GOOD}\n[sentinel_port]\npubsub_soft_limit_bytes = 99999999999\n"),
                "sentinel_port.pubsub_soft_limit_bytes",
            ),
            (
                format!("{GOOD}\n[sentinel_port]\nthreads = 0\n"),
                "sentinel_port.threads",
            ),
            (
                GOOD.replace(
                    "quorum = 2",
                    "quorum = 2\nclient_reconfig_script = \"reconf.sh\"",
                ),
                "masters[0].client_reconfig_script",
            ),
            (
                format!("{GOOD}\n[[webhooks]]\nurl = \"https://hooks.example/\"\n"),
                "webhooks[0].url",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "expected '{want}' in: {e}");
        }
    }

    /// Each rule the state machine applies to a master is refused at load, naming the key,
    /// with the message the config has always given.
    #[test]
    fn master_rules_name_their_key() {
        let with = |line: &str| GOOD.replace("quorum = 2", &format!("quorum = 2\n{line}"));
        let cases = [
            (
                GOOD.replace("\"mymaster\"", "\"my master\""),
                "config key `masters[0].name`: must be non-empty without spaces".to_string(),
            ),
            (
                GOOD.replace("\"127.0.0.1:6379\"", "\"a\\\"b:6379\""),
                "config key `masters[0].addr`: host longer than 256 bytes or with a quote or backslash".into(),
            ),
            (
                with(&format!("auth_user = \"{}\"", "u".repeat(257))),
                "config key `masters[0].auth_user`: longer than 256 bytes".into(),
            ),
            (
                GOOD.replace("quorum = 2", "quorum = 0"),
                "config key `masters[0].quorum`: must be 1 or greater".into(),
            ),
            (
                with("down_after_ms = 0"),
                "config key `masters[0].down_after_ms`: must be greater than 0".into(),
            ),
            (
                with("failover_timeout_ms = 0"),
                "config key `masters[0].failover_timeout_ms`: must be greater than 0".into(),
            ),
            (
                with("parallel_syncs = 0"),
                "config key `masters[0].parallel_syncs`: must be greater than 0".into(),
            ),
            (
                with("notification_script = \"/x\\u0001\""),
                "config key `masters[0].notification_script`: must be an absolute path".into(),
            ),
            // Longer than the state machine accepts: before, the config took it and the
            // master was then left out of the bootstrap without a word.
            (
                with(&format!("notification_script = \"/{}\"", "x".repeat(4096))),
                "config key `masters[0].notification_script`: longer than 4096 bytes".into(),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(&text), want);
        }
        // Empty values mean "none", as before.
        let c = resolve(&with("auth_user = \"\"\nnotification_script = \"\"")).unwrap();
        assert_eq!(c.masters[0].auth_user, None);
        assert_eq!(c.masters[0].notification_script, None);
    }

    #[test]
    fn cli_peers_replace_file_peers() {
        let o = Overrides {
            peers: vec![
                "1=127.0.0.1:1".parse().unwrap(),
                "2=127.0.0.1:2".parse().unwrap(),
            ],
            ..Overrides::default()
        };
        let text = GOOD.replace("quorum = 2", "quorum = 1");
        let c = Config::resolve("t", &text, &o).unwrap();
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[&2], "127.0.0.1:2");
        let o = Overrides {
            peers: vec![
                "1=127.0.0.1:1".parse().unwrap(),
                "1=127.0.0.1:2".parse().unwrap(),
            ],
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve("t", &text, &o).unwrap_err().to_string(),
            "config key `--peer 1=127.0.0.1:2.id`: duplicate node id 1"
        );
    }

    /// `--peer` is checked by the command-line parser, with the reason in its error.
    #[test]
    fn bad_peer_arguments_are_refused_by_the_parser() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: Overrides,
        }
        let parse = |arg: &str| {
            Cli::try_parse_from(["t".to_string(), format!("--peer={arg}")]).map(|c| c.o.peers)
        };
        assert_eq!(
            parse("3=[::1]:7701").unwrap(),
            [PeerArg {
                id: 3,
                addr: "[::1]:7701".into()
            }]
        );
        for (arg, want) in [
            ("x", "'x' is not ID=HOST:PORT (no '=')"),
            (
                "127.0.0.1:7701",
                "'127.0.0.1:7701' is not ID=HOST:PORT (no '=')",
            ),
            (
                "a=h:1",
                "'a' is not a node id (a whole number greater than 0)",
            ),
            (
                "0=h:1",
                "'0' is not a node id (a whole number greater than 0)",
            ),
            (
                "-1=h:1",
                "'-1' is not a node id (a whole number greater than 0)",
            ),
            (
                "=h:1",
                "'' is not a node id (a whole number greater than 0)",
            ),
            ("1=h:x", "'h:x' has an invalid port (1-65535)"),
            ("1=h:0", "'h:0' has an invalid port (1-65535)"),
            ("1=h:65536", "'h:65536' has an invalid port (1-65535)"),
            ("1=h", "'h' is not of the form host:port"),
            ("1=:7701", "':7701' has an invalid host"),
            ("1=", "'' is not of the form host:port"),
        ] {
            let e = parse(arg).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
            let text = e.to_string();
            assert!(
                text.contains(&format!(
                    "invalid value '{arg}' for '--peer <ID=HOST:PORT>': {want}"
                )),
                "{arg}: {text}"
            );
        }
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("requirepass");
        let ap = dir.path().join("auth");
        std::fs::write(&rp, "client-secret\n").unwrap();
        std::fs::write(&ap, "redis-secret").unwrap();
        let text = format!(
            "{}\n[security]\nrequirepass_file = \"{}\"\n",
            GOOD.replace(
                "sentinel = \"127.0.0.1:26379\"",
                "sentinel = \"127.0.0.1:26379\"\ngrpc = \"127.0.0.1:7700\"\npeer = \"127.0.0.1:7701\"",
            )
            .replace(
                "quorum = 2",
                &format!("quorum = 2\nauth_pass_file = \"{}\"", ap.display())
            ),
            rp.display()
        );
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).unwrap();
        let c = Config::load(&path, &Overrides::default()).unwrap();
        assert_eq!(c.requirepass.as_deref(), Some("client-secret"));
        assert_eq!(c.masters[0].auth_pass.as_deref(), Some("redis-secret"));
        std::fs::write(&ap, "\n").unwrap();
        let e = Config::load(&path, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("masters[0].auth_pass_file") && e.contains("empty"),
            "{e}"
        );
        std::fs::remove_file(&rp).unwrap();
        let e = Config::load(&path, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("security.requirepass_file") && e.contains("cannot read"),
            "{e}"
        );
        let both = text.replace("[security]\n", "[security]\nrequirepass = \"x\"\n");
        assert!(err(&both).contains("not both"));
    }

    /// The three TLS tables resolve to one type; a missing or non-PEM file is an error at
    /// load naming its table's key, as before.
    #[test]
    fn tls_tables_name_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ok.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let ok = pem.display().to_string();
        let gone = dir.path().join("gone.pem").display().to_string();
        let text = |tls: &str, redis: &str, sentinel: &str| {
            format!(
                "{GOOD}\n[security]\ntls = {{ cert = \"{ok}\", key = \"{ok}\", ca = \"{tls}\" }}\n\
                 redis_tls = {{ ca = \"{redis}\" }}\n\
                 sentinel_tls = {{ cert = \"{ok}\", key = \"{sentinel}\" }}\n"
            )
        };
        let c = resolve(&text(&ok, &ok, &ok)).unwrap();
        let t = c.tls.as_ref().unwrap();
        assert_eq!(t.identity, Some((pem.clone(), pem.clone())));
        assert_eq!(t.ca, Some(pem.clone()));
        assert_eq!(c.redis_tls.as_ref().unwrap().identity, None);
        assert_eq!(c.sentinel_tls.as_ref().unwrap().ca, None);
        for t in [&c.tls, &c.redis_tls, &c.sentinel_tls] {
            t.as_ref().unwrap().load().unwrap();
        }
        let (cert, _, ca) = c.tls.unwrap().load().unwrap().mutual().unwrap();
        assert!(cert.starts_with(b"-----BEGIN") && ca.starts_with(b"-----BEGIN"));
        for (text, want) in [
            (
                text(&gone, &ok, &ok),
                "config key `security.tls.ca`: cannot read",
            ),
            (
                text(&ok, &gone, &ok),
                "config key `security.redis_tls.ca`: cannot read",
            ),
            (
                text(&ok, &ok, &gone),
                "config key `security.sentinel_tls.key`: cannot read",
            ),
        ] {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, &text).unwrap();
            let e = Config::load(&path, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{e}");
        }
        let e = err(&format!(
            "{GOOD}\n[security]\nredis_tls = {{ cert = \"{ok}\" }}\n"
        ));
        assert!(e.contains("cert and key must be given together"), "{e}");
    }

    /// Which files each TLS table requires is said by its own TOML shape, so a missing one is
    /// a parse error naming the key, as it always was; so is a key no table has.
    #[test]
    fn tls_tables_require_their_files() {
        for (table, want) in [
            (
                "tls = { cert = \"/c\", key = \"/k\" }",
                "missing field `ca`",
            ),
            (
                "tls = { cert = \"/c\", ca = \"/a\" }",
                "missing field `key`",
            ),
            ("sentinel_tls = { key = \"/k\" }", "missing field `cert`"),
            ("sentinel_tls = { cert = \"/c\" }", "missing field `key`"),
            (
                "redis_tls = { ca = \"/a\", crt = \"/c\" }",
                "unknown field `crt`",
            ),
            (
                "redis_tls = { key = \"/k\" }",
                "config key `security.redis_tls`: cert and key must be given together",
            ),
        ] {
            let e = err(&format!("{GOOD}\n[security]\n{table}\n"));
            assert!(e.contains(want), "{table}: {e}");
            if want.contains("field") {
                assert!(e.starts_with("config file test.toml: "), "{table}: {e}");
            }
        }
        let c = resolve(&format!(
            "{GOOD}\n[security]\nredis_tls = {{ ca = \"/a\" }}\nsentinel_tls = {{ cert = \"/c\", key = \"/k\" }}\n"
        ))
        .unwrap();
        assert_eq!(c.redis_tls.unwrap().identity, None);
        assert_eq!(c.sentinel_tls.unwrap().ca, None);
    }

    #[test]
    fn exposed_ports_need_tls_or_a_secret() {
        let mut c = resolve(GOOD).unwrap();
        let keys = |c: &Config| c.exposed().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(&c), ["listen.peer", "listen.grpc"]);
        c.cluster_secret = Some("s".repeat(MIN_CLUSTER_SECRET));
        assert_eq!(keys(&c), ["listen.grpc"]);
        c.requirepass = Some("pw".into());
        assert!(keys(&c).is_empty(), "requirepass is the API credential");
        c.requirepass = None;
        c.api_password = Some("pw".into());
        assert!(keys(&c).is_empty());
        let mut c = resolve(GOOD).unwrap();
        c.tls = Some(TlsFiles {
            table: "security.tls",
            identity: Some(("c".into(), "k".into())),
            ca: Some("a".into()),
        });
        assert!(keys(&c).is_empty(), "mutual TLS authenticates both ports");
        let mut c = resolve(GOOD).unwrap();
        c.listen.peer = "127.0.0.2:7701".parse().unwrap();
        c.listen.grpc = "[::1]:7700".parse().unwrap();
        assert!(keys(&c).is_empty(), "loopback is not exposed");
        let o = Overrides {
            insecure: true,
            ..Overrides::default()
        };
        assert!(Config::resolve("t", GOOD, &o).unwrap().insecure);
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../deploy/config/node1.toml");
        let c = Config::resolve("node1.toml", text, &Overrides::default()).unwrap();
        assert_eq!(c.peers.len(), 3);
        assert!(!c.masters.is_empty());
    }

    #[test]
    fn webhook_urls_are_http_with_a_host() {
        let w = Webhook::parse("http://127.0.0.1:9000/a/b?c=1").unwrap();
        assert_eq!(
            (w.authority.as_str(), w.path.as_str()),
            ("127.0.0.1:9000", "/a/b?c=1")
        );
        let w = Webhook::parse("http://hooks.example").unwrap();
        assert_eq!(
            (w.authority.as_str(), w.path.as_str()),
            ("hooks.example:80", "/")
        );
        assert!(Webhook::parse("https://x/")
            .unwrap_err()
            .contains("http://"));
        assert!(Webhook::parse("http:///x").is_err());
        assert!(Webhook::parse("http://u:p@x/").is_err());
    }
}
