//! Commands proposed through the Raft log, and their wire encoding.
//!
//! Every command carries everything `apply` needs (including times from the proposer's clock)
//! so that applying the same log gives the same state on every node.

use serde::{Deserialize, Serialize};

use crate::model::{Addr, Epoch, NodeId};

/// Settings of one monitored master, as given to `Monitor` or the config's `[[masters]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterSpec {
    /// Sentinel master name (case-sensitive).
    pub name: String,
    /// Address of the master when it is first monitored.
    pub addr: Addr,
    /// Number of coordinator nodes that must see the master down for ODOWN.
    pub quorum: u32,
    /// No valid reply for this long makes an instance subjectively down.
    pub down_after_ms: u64,
    /// Upper bound for one failover (promotion plus reconfiguration).
    pub failover_timeout_ms: u64,
    /// Replicas resynchronising with a new master at the same time.
    pub parallel_syncs: u32,
    /// ACL user for connections to Redis (None: default user).
    #[serde(default)]
    pub auth_user: Option<String>,
    /// Password for connections to Redis.
    #[serde(default)]
    pub auth_pass: Option<String>,
    /// Connect to Redis with TLS.
    #[serde(default)]
    pub tls: bool,
    /// Sentinel's `notification-script`: run on every node for warning-level events of this
    /// master. Absent from the encoding when unset, so older nodes read the entry unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_script: Option<String>,
    /// Sentinel's `client-reconfig-script`: run on every node once per committed switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_reconfig_script: Option<String>,
}

impl MasterSpec {
    /// `down_after_ms` when none is given (config file, MONITOR, gRPC).
    pub const DEFAULT_DOWN_AFTER_MS: u64 = 5_000;
    /// `failover_timeout_ms` when none is given.
    pub const DEFAULT_FAILOVER_TIMEOUT_MS: u64 = 60_000;
    /// `parallel_syncs` when none is given (Sentinel's default).
    pub const DEFAULT_PARALLEL_SYNCS: u32 = 1;

    /// A master with default timings and no credentials.
    pub fn new(name: impl Into<String>, addr: Addr, quorum: u32) -> MasterSpec {
        MasterSpec {
            name: name.into(),
            addr,
            quorum,
            down_after_ms: Self::DEFAULT_DOWN_AFTER_MS,
            failover_timeout_ms: Self::DEFAULT_FAILOVER_TIMEOUT_MS,
            parallel_syncs: Self::DEFAULT_PARALLEL_SYNCS,
            auth_user: None,
            auth_pass: None,
            tls: false,
            notification_script: None,
            client_reconfig_script: None,
        }
    }
}

/// Why a failover was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverReason {
    /// The master is objectively down.
    Odown,
    /// An operator forced it (`SENTINEL FAILOVER`, gRPC `Failover`).
    Forced,
    /// Planned zero-loss switchover of a healthy master (`FAILOVER TO` on Redis).
    Switchover,
}

impl FailoverReason {
    /// Name used in logs, history and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverReason::Odown => "odown",
            FailoverReason::Forced => "forced",
            FailoverReason::Switchover => "switchover",
        }
    }
}

/// What a node found wrong (or right) with a master when it proposed an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObserveReason {
    /// Valid replies again.
    Ok,
    /// No valid reply for `down_after`.
    NoReply,
    /// The master reports itself a replica for too long.
    RoleReplica,
    /// The master restarted with a new run id and an empty dataset.
    EmptyRestart,
}

/// Progress of one replica during reconfiguration after a promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconfStage {
    /// `REPLICAOF new-master` sent.
    Sent,
    /// The replica reports the new master as its master.
    InProgress,
    /// The replica's link to the new master is up.
    Done,
    /// Gave up on it (unreachable, or the failover timeout passed).
    TimedOut,
}

/// Why an instance is being repointed outside a failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceKind {
    /// It claims to be master but is not the committed one (e.g. a returning old master).
    ConvertToSlave,
    /// It is a replica of the wrong master.
    FixSlaveConfig,
}

/// Addresses a coordinator node announces about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Raft peer port address.
    pub peer_addr: Option<String>,
    /// Sentinel-compatible RESP port address (as clients should reach it).
    pub sentinel_addr: Option<String>,
    /// gRPC API address.
    pub grpc_addr: Option<String>,
    /// 40-hex run id, stable across restarts (Sentinel's `myid`).
    pub run_id: Option<String>,
    /// Highest command format version the node reads (`None`: [`BASE_VERSION`], a node
    /// from before versions were announced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_version: Option<u32>,
}

/// A replicated command. Encoded as JSON with a version tag in [`Envelope`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// The `[[masters]]` of the first leader's config, applied once when the cluster forms.
    Bootstrap {
        /// Masters to monitor.
        masters: Vec<MasterSpec>,
    },
    /// Start monitoring a master. Identical parameters for an existing name are accepted.
    Monitor {
        /// The master to monitor.
        spec: MasterSpec,
    },
    /// Stop monitoring a master.
    Remove {
        /// Master name.
        name: String,
    },
    /// Change options of a master, Sentinel's `SENTINEL SET` names and values.
    Set {
        /// Master name.
        name: String,
        /// (option, value) pairs, validated all together before any is applied.
        options: Vec<(String, String)>,
    },
    /// Forget replicas, observations and failover state of every master matching a glob.
    Reset {
        /// Redis glob pattern.
        pattern: String,
    },
    /// A node's subjective view of a master changed.
    Observe {
        /// Observing node.
        node: NodeId,
        /// Master name.
        master: String,
        /// Address the observation is about; ignored if the master has moved since.
        addr: Addr,
        /// Subjectively down.
        down: bool,
        /// Why.
        reason: ObserveReason,
        /// Proposer's wall clock, ms since the Unix epoch.
        at_ms: u64,
    },
    /// Replicas the leader discovered from the master's INFO (added to the known set).
    Replicas {
        /// Master name.
        master: String,
        /// Replica addresses.
        replicas: Vec<Addr>,
    },
    /// The leader forgets replicas that stayed unreachable, and absent from their master's
    /// INFO, for longer than the master's `replica_forget_after_ms`.
    ForgetReplicas {
        /// Master name.
        master: String,
        /// Replica addresses.
        replicas: Vec<Addr>,
    },
    /// An operator asks for a failover (`SENTINEL FAILOVER`, gRPC `Failover`/`Switchover`) on
    /// any node; the leader's executor picks the request up and answers it with
    /// `FailoverStart` or an epoch-0 `FailoverAbort`, both of which clear it.
    FailoverRequest {
        /// Master name.
        master: String,
        /// `Forced` or `Switchover` (an `Odown` request is refused).
        reason: FailoverReason,
        /// Replica to promote, or None to let the leader choose.
        target: Option<Addr>,
        /// Proposer's wall clock.
        at_ms: u64,
    },
    /// The leader chose a candidate and takes a new epoch. Nothing is sent to Redis before this applies.
    FailoverStart {
        /// Master name.
        master: String,
        /// Must be greater than the current epoch when applied.
        epoch: Epoch,
        /// The replica to promote.
        candidate: Addr,
        /// Why.
        reason: FailoverReason,
        /// Leader node that runs it.
        leader: NodeId,
        /// Proposer's wall clock.
        at_ms: u64,
    },
    /// The candidate was verified as master: every node switches its answer now.
    FailoverDone {
        /// Master name.
        master: String,
        /// Epoch of the failover being completed.
        epoch: Epoch,
        /// The promoted replica.
        new_addr: Addr,
        /// Proposer's wall clock.
        at_ms: u64,
    },
    /// The failover ended without a promotion; the master keeps its address.
    FailoverAbort {
        /// Master name.
        master: String,
        /// Epoch of the failover being aborted.
        epoch: Epoch,
        /// Sentinel event suffix (`no-good-slave`, `slave-timeout`, ...) or free text.
        why: String,
        /// Proposer's wall clock.
        at_ms: u64,
    },
    /// Progress of a replica being pointed at the new master.
    Reconf {
        /// Master name.
        master: String,
        /// Epoch of the failover.
        epoch: Epoch,
        /// The replica.
        replica: Addr,
        /// New stage.
        stage: ReconfStage,
    },
    /// Reconfiguration after a promotion finished.
    FailoverEnd {
        /// Master name.
        master: String,
        /// Epoch of the failover.
        epoch: Epoch,
        /// Ended because `failover_timeout` passed.
        timed_out: bool,
        /// Proposer's wall clock.
        at_ms: u64,
    },
    /// The leader is about to repoint an instance to the committed master (fencing). Committed
    /// first, like every decision, so every node records and publishes it.
    Fence {
        /// Master name.
        master: String,
        /// The master's config epoch the decision was made under; refused if it moved.
        epoch: Epoch,
        /// The instance being repointed.
        instance: Addr,
        /// Why.
        kind: FenceKind,
    },
    /// No automatic failover for this master until `Resume`.
    Pause {
        /// Master name.
        master: String,
    },
    /// Undo `Pause`.
    Resume {
        /// Master name.
        master: String,
    },
    /// A node publishes its own addresses and run id.
    Announce {
        /// The node.
        node: NodeId,
        /// Its addresses.
        info: MemberInfo,
    },
    /// A node holds back full syncs from a master that restarted empty (`original` is the
    /// instance's own `repl-diskless-sync` and `repl-diskless-sync-delay`, kept so that any
    /// node can restore them), or the hold ended and they were restored (`None`).
    SyncHold {
        /// Master name.
        master: String,
        /// The held instance.
        instance: Addr,
        /// The node that holds it (the first record's node owns the hold).
        node: NodeId,
        /// The settings to restore; `None` clears the record.
        original: Option<(String, String)>,
        /// Proposer's wall clock.
        at_ms: u64,
    },
    /// Raises the cluster's command format version: every member reported that it reads
    /// it. Commands of a newer format are proposed only from then on.
    ClusterVersion {
        /// The new version.
        version: u32,
    },
    /// Several commands in one log entry (format [`BATCH_VERSION`]), applied in order at the
    /// entry's index, each with its own outcome as if it had its own entry: when many masters
    /// fail together, their observations and decisions cost one entry, not one each. A batch
    /// inside a batch is refused.
    Batch {
        /// The commands, in the order they apply.
        commands: Vec<Command>,
    },
}

/// Versioned wrapper, so a later release can read entries written by this one.
#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    cmd: Command,
}

/// Encoding version written by this build.
/// The command format every version reads; what older nodes expect in every entry.
///
/// What each format adds (a node reading format N reads every one below it):
/// 1. the commands of the first releases (builds from before formats announced none);
/// 2. `ClusterVersion`, `ForgetReplicas`, `SET replica-forget-after`; the state machine
///    enforces the size limits (`limits::BOUNDED_STATE_VERSION`) and expires down votes
///    ([`VOTE_EXPIRY_VERSION`]) from this cluster version on;
/// 3. `SET notification-script` / `client-reconfig-script`;
/// 4. `SyncHold`;
/// 5. `Batch` ([`BATCH_VERSION`]).
pub const BASE_VERSION: u32 = 1;
/// The highest command format this version reads. A format above the committed cluster
/// version is never proposed (see `ClusterState::cluster_version`), so a node of an older
/// version never meets an entry it cannot read in a cluster it is a member of.
pub const SUPPORTED_VERSION: u32 = 5;
/// The first format with [`Command::Batch`].
pub const BATCH_VERSION: u32 = 5;
/// The first format whose state machine lets down votes expire (see "Down votes expire" in
/// `fsm`). Expiry came in while every build still wrote format 1, so format 1 builds differ
/// (the first ones count a vote however old, later ones expire it) while every build that
/// reads format 2 expires votes by the same rule. Below this version the state machine
/// therefore decides as the first format 1 builds did; this is 2 and not a new format, since
/// a new one would switch expiry off on upgraded nodes while format 2 to 5 nodes of the same
/// cluster keep it on.
pub const VOTE_EXPIRY_VERSION: u32 = 2;
/// Most commands in one [`Command::Batch`] (it is one Raft entry, so it must stay far below
/// the Raft message size limit: a few hundred bytes each).
pub const MAX_BATCH: usize = 256;

/// A log entry could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable command (version or JSON): {0}")]
pub struct DecodeError(String);

impl Command {
    /// Bytes stored in the Raft entry's data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            v: self.format_version(),
            cmd: self.clone(),
        })
        .expect("commands always serialize")
    }

    /// Reads an entry's data back.
    pub fn decode(data: &[u8]) -> Result<Command, DecodeError> {
        let env: Envelope = serde_json::from_slice(data).map_err(|e| DecodeError(e.to_string()))?;
        if env.v == 0 || env.v > SUPPORTED_VERSION {
            return Err(DecodeError(format!(
                "command format version {} (this version reads up to {SUPPORTED_VERSION})",
                env.v
            )));
        }
        Ok(env.cmd)
    }

    /// The command format an entry of this command is written in: the oldest version that
    /// reads it. Existing commands stay at [`BASE_VERSION`], so older nodes read them.
    pub fn format_version(&self) -> u32 {
        match self {
            // Versions before format 2 know neither of these.
            Command::ClusterVersion { .. } | Command::ForgetReplicas { .. } => 2,
            // An older node would refuse the option and apply none of the others.
            Command::Set { options, .. }
                if options
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("replica-forget-after")) =>
            {
                2
            }
            // Format 2 nodes refuse script options (and the whole SET with them).
            Command::Set { options, .. }
                if options.iter().any(|(k, _)| {
                    k.eq_ignore_ascii_case("notification-script")
                        || k.eq_ignore_ascii_case("client-reconfig-script")
                }) =>
            {
                3
            }
            // Format 4: committed hold settings.
            Command::SyncHold { .. } => 4,
            Command::Batch { commands } => commands
                .iter()
                .map(Command::format_version)
                .fold(BATCH_VERSION, u32::max),
            _ => BASE_VERSION,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Bootstrap { .. } => "bootstrap",
            Command::Monitor { .. } => "monitor",
            Command::Remove { .. } => "remove",
            Command::Set { .. } => "set",
            Command::Reset { .. } => "reset",
            Command::Observe { .. } => "observe",
            Command::Replicas { .. } => "replicas",
            Command::ForgetReplicas { .. } => "forget_replicas",
            Command::FailoverRequest { .. } => "failover_request",
            Command::FailoverStart { .. } => "failover_start",
            Command::FailoverDone { .. } => "failover_done",
            Command::FailoverAbort { .. } => "failover_abort",
            Command::Reconf { .. } => "reconf",
            Command::FailoverEnd { .. } => "failover_end",
            Command::Fence { .. } => "fence",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Announce { .. } => "announce",
            Command::ClusterVersion { .. } => "cluster_version",
            Command::SyncHold { .. } => "sync_hold",
            Command::Batch { .. } => "batch",
        }
    }

    /// Whether a node may put this command in a [`Command::Batch`] with others: the
    /// observations and failover decisions many masters produce at once. Commands about the
    /// cluster itself (bootstrap, announcements, the format version) and operator commands
    /// keep an entry of their own.
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            Command::Observe { .. }
                | Command::Replicas { .. }
                | Command::ForgetReplicas { .. }
                | Command::FailoverStart { .. }
                | Command::FailoverDone { .. }
                | Command::FailoverAbort { .. }
                | Command::Reconf { .. }
                | Command::FailoverEnd { .. }
                | Command::Fence { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_commands_keep_the_base_format_and_newer_formats_are_refused() {
        let announce = Command::Announce {
            node: 1,
            info: MemberInfo {
                command_version: Some(SUPPORTED_VERSION),
                ..MemberInfo::default()
            },
        };
        let bytes = announce.encode();
        // What an older node checks: the envelope says the base format.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["v"], BASE_VERSION);
        assert_eq!(Command::decode(&bytes).unwrap(), announce);

        let raise = Command::ClusterVersion { version: 2 };
        assert_eq!(raise.format_version(), 2);
        let set = |k: &str| Command::Set {
            name: "m".into(),
            options: vec![(k.into(), "1".into())],
        };
        assert_eq!(
            set("down-after-milliseconds").format_version(),
            BASE_VERSION
        );
        assert_eq!(set("Replica-Forget-After").format_version(), 2);
        assert_eq!(set("client-reconfig-script").format_version(), 3);
        assert_eq!(set("NOTIFICATION-SCRIPT").format_version(), 3);
        // A spec without scripts encodes as before (older nodes read it unchanged).
        let spec = MasterSpec::new("m", "10.0.0.1:6379".parse().unwrap(), 2);
        assert!(!serde_json::to_string(&spec).unwrap().contains("script"));
        assert_eq!(Command::decode(&raise.encode()).unwrap(), raise);

        let future = format!(
            r#"{{"v":{},"op":"pause","master":"m"}}"#,
            SUPPORTED_VERSION + 1
        );
        let e = Command::decode(future.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("format version {}", SUPPORTED_VERSION + 1)),
            "{e}"
        );
        assert!(Command::decode(br#"{"v":3,"op":"from_the_future"}"#).is_err());
        let hold = Command::SyncHold {
            master: "m".into(),
            instance: "127.0.0.1:6379".parse().unwrap(),
            node: 1,
            original: Some(("no".into(), "3".into())),
            at_ms: 1,
        };
        assert_eq!(hold.format_version(), 4);
        assert_eq!(Command::decode(&hold.encode()).unwrap(), hold);
    }
}
