//! The command table: names, arities, flags and docs of every command the port serves, in
//! the shape of Redis's own table (arity counts the command name; negative means "at least").
//! Lookup, arity errors, the NOAUTH gate, the Pub/Sub gate and `COMMAND` all read it.

/// What to run once a request passed the table's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CmdId {
    Auth,
    Hello,
    Ping,
    Quit,
    Role,
    Info,
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
    /// A container called without a subcommand (only `COMMAND` accepts that).
    Container,
    ClientGetname,
    ClientId,
    ClientInfo,
    ClientKill,
    ClientList,
    ClientSetinfo,
    ClientSetname,
    ClientNoEvict,
    ClientHelp,
    CommandCount,
    CommandDocs,
    CommandGetkeys,
    CommandInfo,
    CommandList,
    CommandHelp,
    SentinelMasters,
    SentinelMaster,
    SentinelReplicas,
    SentinelSentinels,
    SentinelGetMasterAddr,
    SentinelCkquorum,
    SentinelFailover,
    SentinelMonitor,
    SentinelRemove,
    SentinelSet,
    SentinelReset,
    SentinelMyid,
    SentinelConfig,
    SentinelInfoCache,
    SentinelFlushconfig,
    SentinelPendingScripts,
    SentinelDebug,
    SentinelIsMasterDownByAddr,
    SentinelSimulateFailure,
    SentinelHelp,
}

impl CmdId {
    /// Number of variants (`SentinelHelp` is the last), for per-command counters.
    pub const COUNT: usize = CmdId::SentinelHelp as usize + 1;
}

/// Every command a request can run, once, with the name Redis prints for it
/// (`sentinel|masters`): plain commands, subcommands, and containers that run alone
/// (`COMMAND`). An alias (`sentinel|primaries`) shares its command's id and first name.
pub fn runnable() -> impl Iterator<Item = (CmdId, &'static str)> {
    let mut seen = [false; CmdId::COUNT];
    COMMANDS
        .iter()
        .flat_map(|top| {
            let alone = (!top.is_container() || top.arity_ok(1)).then_some((top.id, top.fullname));
            alone
                .into_iter()
                .chain(top.subs.iter().map(|s| (s.id, s.fullname)))
        })
        .filter(move |(id, _)| !std::mem::replace(&mut seen[*id as usize], true))
}

/// One command or subcommand.
#[derive(Debug)]
pub struct Spec {
    /// Lower-case name (`sentinel|masters` has name `masters`).
    pub name: &'static str,
    /// Name as Redis prints it in errors and COMMAND (`sentinel|masters`).
    pub fullname: &'static str,
    /// Arity including the command (and subcommand) name; negative: at least that many.
    pub arity: i32,
    /// COMMAND INFO flags.
    pub flags: &'static [&'static str],
    /// ACL categories.
    pub acl: &'static [&'static str],
    /// COMMAND DOCS summary.
    pub summary: &'static str,
    /// Redis version that introduced it.
    pub since: &'static str,
    /// COMMAND DOCS group.
    pub group: &'static str,
    /// COMMAND DOCS complexity.
    pub complexity: &'static str,
    /// Subcommands (containers only).
    pub subs: &'static [Spec],
    /// What runs it.
    pub id: CmdId,
}

impl Spec {
    /// Whether it runs before authentication (Redis flag `no-auth`).
    pub fn no_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
    }

    /// Whether a RESP2 client in subscribed mode may run it.
    pub fn allowed_in_pubsub(&self) -> bool {
        matches!(
            self.id,
            CmdId::Ping
                | CmdId::Subscribe
                | CmdId::Psubscribe
                | CmdId::Unsubscribe
                | CmdId::Punsubscribe
                | CmdId::Quit
        )
    }

    /// Whether `argc` (command name included) fits the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let a = self.arity as i64;
        if a >= 0 {
            argc == a
        } else {
            argc >= -a
        }
    }

    /// Whether it has subcommands.
    pub fn is_container(&self) -> bool {
        !self.subs.is_empty()
    }

    /// The subcommand named `name` (case-insensitive).
    pub fn sub(&self, name: &[u8]) -> Option<&'static Spec> {
        self.subs
            .iter()
            .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// The top-level command named `name` (case-insensitive).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

macro_rules! spec {
    ($name:literal, $full:literal, $arity:expr, $id:ident, [$($f:literal),*], [$($a:literal),*], $since:literal, $group:literal, $cx:literal, $summary:literal) => {
        Spec {
            name: $name,
            fullname: $full,
            arity: $arity,
            flags: &[$($f),*],
            acl: &[$($a),*],
            summary: $summary,
            since: $since,
            group: $group,
            complexity: $cx,
            subs: &[],
            id: CmdId::$id,
        }
    };
}

const ADMIN: [&str; 3] = ["@admin", "@slow", "@dangerous"];

macro_rules! sentinel_sub {
    ($name:literal, $arity:expr, $id:ident, $since:literal, $summary:literal) => {
        Spec {
            name: $name,
            fullname: concat!("sentinel|", $name),
            arity: $arity,
            flags: &["admin"],
            acl: &ADMIN,
            summary: $summary,
            since: $since,
            group: "sentinel",
            complexity: "O(1)",
            subs: &[],
            id: CmdId::$id,
        }
    };
}

/// `CLIENT` subcommands served.
static CLIENT_SUBS: [Spec; 9] = [
    spec!(
        "getname",
        "client|getname",
        2,
        ClientGetname,
        ["noscript", "loading", "stale"],
        ["@slow", "@connection"],
        "2.6.9",
        "connection",
        "O(1)",
        "Returns the name of the connection."
    ),
    spec!(
        "id",
        "client|id",
        2,
        ClientId,
        ["noscript", "loading", "stale"],
        ["@slow", "@connection"],
        "5.0.0",
        "connection",
        "O(1)",
        "Returns the unique client ID of the connection."
    ),
    spec!(
        "info",
        "client|info",
        2,
        ClientInfo,
        ["noscript", "loading", "stale"],
        ["@slow", "@connection"],
        "6.2.0",
        "connection",
        "O(1)",
        "Returns information about the connection."
    ),
    spec!(
        "kill",
        "client|kill",
        -3,
        ClientKill,
        ["admin", "noscript", "loading", "stale"],
        ["@admin", "@slow", "@dangerous", "@connection"],
        "2.4.0",
        "connection",
        "O(N) where N is the number of client connections",
        "Terminates open connections."
    ),
    spec!(
        "list",
        "client|list",
        -2,
        ClientList,
        ["admin", "noscript", "loading", "stale"],
        ["@admin", "@slow", "@dangerous", "@connection"],
        "2.4.0",
        "connection",
        "O(N) where N is the number of client connections",
        "Lists open connections."
    ),
    spec!(
        "setinfo",
        "client|setinfo",
        4,
        ClientSetinfo,
        ["noscript", "loading", "stale"],
        ["@slow", "@connection"],
        "7.2.0",
        "connection",
        "O(1)",
        "Sets information specific to the client or connection."
    ),
    spec!(
        "setname",
        "client|setname",
        3,
        ClientSetname,
        ["noscript", "loading", "stale"],
        ["@slow", "@connection"],
        "2.6.9",
        "connection",
        "O(1)",
        "Sets the connection name."
    ),
    spec!(
        "no-evict",
        "client|no-evict",
        3,
        ClientNoEvict,
        ["admin", "noscript", "loading", "stale"],
        ["@admin", "@slow", "@dangerous", "@connection"],
        "7.0.0",
        "connection",
        "O(1)",
        "Sets the client eviction mode of the connection."
    ),
    spec!(
        "help",
        "client|help",
        2,
        ClientHelp,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "5.0.0",
        "connection",
        "O(1)",
        "Returns helpful text about the different subcommands."
    ),
];

/// `COMMAND` subcommands served.
static COMMAND_SUBS: [Spec; 6] = [
    spec!(
        "count",
        "command|count",
        2,
        CommandCount,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "2.8.13",
        "server",
        "O(1)",
        "Returns a count of commands."
    ),
    spec!(
        "docs",
        "command|docs",
        -2,
        CommandDocs,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "7.0.0",
        "server",
        "O(N) where N is the number of commands to look up",
        "Returns documentary information about one, multiple or all commands."
    ),
    spec!(
        "getkeys",
        "command|getkeys",
        -3,
        CommandGetkeys,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "2.8.13",
        "server",
        "O(N) where N is the number of arguments to the command",
        "Extracts the key names from an arbitrary command."
    ),
    spec!(
        "info",
        "command|info",
        -2,
        CommandInfo,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "2.8.13",
        "server",
        "O(N) where N is the number of commands to look up",
        "Returns information about one, multiple or all commands."
    ),
    spec!(
        "list",
        "command|list",
        -2,
        CommandList,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "7.0.0",
        "server",
        "O(N) where N is the total number of Redis commands",
        "Returns a list of command names."
    ),
    spec!(
        "help",
        "command|help",
        2,
        CommandHelp,
        ["loading", "stale"],
        ["@slow", "@connection"],
        "5.0.0",
        "server",
        "O(1)",
        "Returns helpful text about the different subcommands."
    ),
];

/// `SENTINEL` subcommands served, Valkey's `PRIMARY` aliases included.
static SENTINEL_SUBS: [Spec; 24] = [
    sentinel_sub!(
        "ckquorum",
        3,
        SentinelCkquorum,
        "2.8.4",
        "Checks for a Redis Sentinel quorum."
    ),
    sentinel_sub!(
        "config",
        -4,
        SentinelConfig,
        "6.2.0",
        "Configures Redis Sentinel."
    ),
    sentinel_sub!(
        "debug",
        -2,
        SentinelDebug,
        "7.0.0",
        "Lists or updates the current configurable parameters of Redis Sentinel."
    ),
    sentinel_sub!(
        "failover",
        3,
        SentinelFailover,
        "2.8.4",
        "Forces a Redis Sentinel failover."
    ),
    sentinel_sub!(
        "flushconfig",
        2,
        SentinelFlushconfig,
        "2.8.4",
        "Rewrites the Redis Sentinel configuration file."
    ),
    sentinel_sub!(
        "get-master-addr-by-name",
        3,
        SentinelGetMasterAddr,
        "2.8.4",
        "Returns the port and address of a master Redis instance."
    ),
    sentinel_sub!(
        "get-primary-addr-by-name",
        3,
        SentinelGetMasterAddr,
        "8.0.0",
        "Returns the port and address of a primary Redis instance."
    ),
    Spec {
        name: "help",
        fullname: "sentinel|help",
        arity: 2,
        flags: &["loading", "stale"],
        acl: &["@slow"],
        summary: "Returns helpful text about the different subcommands.",
        since: "6.2.0",
        group: "sentinel",
        complexity: "O(1)",
        subs: &[],
        id: CmdId::SentinelHelp,
    },
    sentinel_sub!(
        "info-cache",
        -3,
        SentinelInfoCache,
        "3.2.0",
        "Returns the cached INFO replies from the deployment's instances."
    ),
    sentinel_sub!(
        "is-master-down-by-addr",
        6,
        SentinelIsMasterDownByAddr,
        "2.8.4",
        "Determines whether a master Redis instance is down."
    ),
    sentinel_sub!(
        "master",
        3,
        SentinelMaster,
        "2.8.4",
        "Returns the state of a master Redis instance."
    ),
    sentinel_sub!(
        "masters",
        2,
        SentinelMasters,
        "2.8.4",
        "Returns a list of monitored Redis masters."
    ),
    sentinel_sub!("monitor", 6, SentinelMonitor, "2.8.4", "Starts monitoring."),
    sentinel_sub!(
        "myid",
        2,
        SentinelMyid,
        "6.2.0",
        "Returns the Redis Sentinel instance ID."
    ),
    sentinel_sub!(
        "pending-scripts",
        2,
        SentinelPendingScripts,
        "2.8.4",
        "Returns information about pending scripts for Redis Sentinel."
    ),
    sentinel_sub!(
        "primaries",
        2,
        SentinelMasters,
        "8.0.0",
        "Returns a list of monitored Redis primaries."
    ),
    sentinel_sub!(
        "primary",
        3,
        SentinelMaster,
        "8.0.0",
        "Returns the state of a primary Redis instance."
    ),
    sentinel_sub!("remove", 3, SentinelRemove, "2.8.4", "Stops monitoring."),
    sentinel_sub!(
        "replicas",
        3,
        SentinelReplicas,
        "5.0.0",
        "Returns a list of the monitored Redis replicas."
    ),
    sentinel_sub!(
        "reset",
        3,
        SentinelReset,
        "2.8.0",
        "Resets Redis masters by name matching a pattern."
    ),
    sentinel_sub!(
        "sentinels",
        3,
        SentinelSentinels,
        "2.8.4",
        "Returns a list of Sentinel instances."
    ),
    sentinel_sub!(
        "set",
        -5,
        SentinelSet,
        "2.8.4",
        "Changes the configuration of a monitored Redis master."
    ),
    sentinel_sub!(
        "simulate-failure",
        -3,
        SentinelSimulateFailure,
        "3.2.0",
        "Simulates failover scenarios."
    ),
    sentinel_sub!(
        "slaves",
        3,
        SentinelReplicas,
        "2.8.0",
        "Returns a list of the monitored replicas."
    ),
];

/// Every top-level command served.
pub static COMMANDS: [Spec; 13] = [
    spec!(
        "auth",
        "auth",
        -2,
        Auth,
        [
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy"
        ],
        ["@fast", "@connection"],
        "1.0.0",
        "connection",
        "O(N) where N is the number of passwords defined for the user",
        "Authenticates the connection."
    ),
    Spec {
        name: "client",
        fullname: "client",
        arity: -2,
        flags: &[],
        acl: &["@slow"],
        summary: "A container for client connection commands.",
        since: "2.4.0",
        group: "connection",
        complexity: "Depends on subcommand.",
        subs: &CLIENT_SUBS,
        id: CmdId::Container,
    },
    Spec {
        name: "command",
        fullname: "command",
        arity: -1,
        flags: &["loading", "stale"],
        acl: &["@slow", "@connection"],
        summary: "Returns detailed information about all commands.",
        since: "2.8.13",
        group: "server",
        complexity: "O(N) where N is the total number of Redis commands",
        subs: &COMMAND_SUBS,
        id: CmdId::Container,
    },
    spec!(
        "hello",
        "hello",
        -1,
        Hello,
        [
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy"
        ],
        ["@fast", "@connection"],
        "6.0.0",
        "connection",
        "O(1)",
        "Handshakes with the Redis server."
    ),
    spec!(
        "info",
        "info",
        -1,
        Info,
        ["loading", "stale"],
        ["@slow", "@dangerous"],
        "1.0.0",
        "server",
        "O(1)",
        "Returns information and statistics about the server."
    ),
    spec!(
        "ping",
        "ping",
        -1,
        Ping,
        ["fast"],
        ["@fast", "@connection"],
        "1.0.0",
        "connection",
        "O(1)",
        "Returns the server's liveliness response."
    ),
    spec!(
        "psubscribe",
        "psubscribe",
        -2,
        Psubscribe,
        ["pubsub", "noscript", "loading", "stale"],
        ["@pubsub", "@slow"],
        "2.0.0",
        "pubsub",
        "O(N) where N is the number of patterns to subscribe to.",
        "Listens for messages published to channels that match one or more patterns."
    ),
    spec!(
        "punsubscribe",
        "punsubscribe",
        -1,
        Punsubscribe,
        ["pubsub", "noscript", "loading", "stale"],
        ["@pubsub", "@slow"],
        "2.0.0",
        "pubsub",
        "O(N) where N is the number of patterns to unsubscribe.",
        "Stops listening to messages published to channels that match one or more patterns."
    ),
    spec!(
        "quit",
        "quit",
        -1,
        Quit,
        [
            "allow_busy",
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth"
        ],
        ["@fast", "@connection"],
        "1.0.0",
        "connection",
        "O(1)",
        "Closes the connection."
    ),
    spec!(
        "role",
        "role",
        1,
        Role,
        ["noscript", "loading", "stale", "fast"],
        ["@admin", "@fast", "@dangerous"],
        "2.8.12",
        "server",
        "O(1)",
        "Returns the replication role."
    ),
    Spec {
        name: "sentinel",
        fullname: "sentinel",
        arity: -2,
        flags: &["admin"],
        acl: &ADMIN,
        summary: "A container for Redis Sentinel commands.",
        since: "2.8.4",
        group: "sentinel",
        complexity: "Depends on subcommand.",
        subs: &SENTINEL_SUBS,
        id: CmdId::Container,
    },
    spec!(
        "subscribe",
        "subscribe",
        -2,
        Subscribe,
        ["pubsub", "noscript", "loading", "stale"],
        ["@pubsub", "@slow"],
        "2.0.0",
        "pubsub",
        "O(N) where N is the number of channels to subscribe to.",
        "Listens for messages published to channels."
    ),
    spec!(
        "unsubscribe",
        "unsubscribe",
        -1,
        Unsubscribe,
        ["pubsub", "noscript", "loading", "stale"],
        ["@pubsub", "@slow"],
        "2.0.0",
        "pubsub",
        "O(N) where N is the number of channels to unsubscribe.",
        "Stops listening to messages posted to channels."
    ),
];
