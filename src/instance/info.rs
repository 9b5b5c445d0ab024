//! Parsers for what Redis tells us about replication: `INFO replication`, the `run_id` line
//! of `INFO server`, and the `ROLE` reply. Pure: bytes or values in, typed data or a
//! [`InfoError`] out, never a panic, whatever the input.

use redis::Value;

use crate::model::Addr;
use crate::view::ReportedRole;

/// Longest INFO text we agree to parse; a real `INFO replication` is well under 4 KiB, and
/// a huge reply means the port is not what we think it is.
const MAX_INFO_LEN: usize = 1 << 20;

/// Why a reply could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// The reply is not text of the expected shape.
    #[error("unexpected reply to {what}: {detail}")]
    Shape {
        /// `INFO replication`, `ROLE`, ...
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A field is missing.
    #[error("{what} has no '{field}' field")]
    Missing {
        /// Which reply.
        what: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A field has a value we cannot use.
    #[error("{what} field '{field}' has an invalid value '{value}'")]
    BadField {
        /// Which reply.
        what: &'static str,
        /// Field name.
        field: String,
        /// The value (truncated).
        value: String,
    },
}

/// One `slaveN:` line of a master's `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedReplica {
    /// Address the replica announced (or the master saw).
    pub addr: Addr,
    /// `state=` (`online`, `wait_bgsave`, `send_bulk`, ...).
    pub state: String,
    /// `offset=` acknowledged by the replica.
    pub offset: i64,
}

/// The parts of `INFO replication` the monitor and the failover executor use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// `role:master` or `role:slave`.
    pub role: ReportedRole,
    /// Replicas listed by a master (`slaveN:` lines).
    pub replicas: Vec<ConnectedReplica>,
    /// `master_repl_offset` (every role has it).
    pub master_repl_offset: i64,
    /// `master_replid`: the replication history id; a new one after an empty restart.
    pub master_replid: Option<String>,
    /// `master_failover_state` (`no-failover`, `waiting-for-sync`, `failover-in-progress`).
    pub failover_state: Option<String>,
    /// Replica: `master_host`.
    pub master_host: Option<String>,
    /// Replica: `master_port`.
    pub master_port: Option<u16>,
    /// Replica: `master_link_status:up`.
    pub master_link_up: bool,
    /// Replica: `master_link_down_since_seconds` (absent or -1 while the link is up or was
    /// never up).
    pub master_link_down_secs: Option<u64>,
    /// Replica: `master_sync_in_progress:1`.
    pub sync_in_progress: bool,
    /// Replica: `slave_repl_offset`.
    pub slave_repl_offset: Option<i64>,
    /// Replica: `slave_priority` (0 = never promote).
    pub priority: Option<u32>,
    /// Replica: `replica_announced` (default true when absent, as on Redis before 6.2).
    pub replica_announced: bool,
}

impl ReplicationInfo {
    /// The offset to compare replicas by: `slave_repl_offset` for a replica, else the
    /// master's own offset.
    pub fn offset(&self) -> i64 {
        match self.role {
            ReportedRole::Replica => self.slave_repl_offset.unwrap_or(self.master_repl_offset),
            ReportedRole::Master => self.master_repl_offset,
        }
    }
}

/// Splits INFO text into `key:value` pairs, skipping `# Section` headers and blank lines.
fn fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
}

fn bad(what: &'static str, field: &str, value: &str) -> InfoError {
    InfoError::BadField {
        what,
        field: field.to_string(),
        value: value.chars().take(64).collect(),
    }
}

fn check_text(what: &'static str, text: &str) -> Result<(), InfoError> {
    if text.len() > MAX_INFO_LEN {
        return Err(InfoError::Shape {
            what,
            detail: format!("{} bytes is too long", text.len()),
        });
    }
    Ok(())
}

/// Parses the text of `INFO replication`.
pub fn parse_replication(text: &str) -> Result<ReplicationInfo, InfoError> {
    const WHAT: &str = "INFO replication";
    check_text(WHAT, text)?;
    let mut role = None;
    let mut info = ReplicationInfo {
        role: ReportedRole::Master,
        replicas: Vec::new(),
        master_repl_offset: 0,
        master_replid: None,
        failover_state: None,
        master_host: None,
        master_port: None,
        master_link_up: false,
        master_link_down_secs: None,
        sync_in_progress: false,
        slave_repl_offset: None,
        priority: None,
        replica_announced: true,
    };
    let int = |k: &str, v: &str| v.parse::<i64>().map_err(|_| bad(WHAT, k, v));
    for (k, v) in fields(text) {
        match k {
            "role" => {
                role = Some(match v {
                    "master" => ReportedRole::Master,
                    "slave" | "replica" => ReportedRole::Replica,
                    _ => return Err(bad(WHAT, k, v)),
                })
            }
            "master_repl_offset" => info.master_repl_offset = int(k, v)?,
            "master_replid" => info.master_replid = Some(v.to_string()),
            "master_failover_state" => info.failover_state = Some(v.to_string()),
            "master_host" => info.master_host = Some(v.to_string()),
            "master_port" => {
                info.master_port = Some(v.parse::<u16>().map_err(|_| bad(WHAT, k, v))?)
            }
            "master_link_status" => info.master_link_up = v == "up",
            "master_link_down_since_seconds" => {
                let secs = int(k, v)?;
                info.master_link_down_secs = u64::try_from(secs).ok();
            }
            "master_sync_in_progress" => info.sync_in_progress = v == "1",
            "slave_repl_offset" => info.slave_repl_offset = Some(int(k, v)?),
            "slave_priority" | "replica_priority" => {
                info.priority = Some(v.parse::<u32>().map_err(|_| bad(WHAT, k, v))?)
            }
            "replica_announced" => info.replica_announced = v != "0",
            _ if is_slave_line(k) => info.replicas.push(parse_slave_line(k, v)?),
            _ => {}
        }
    }
    info.role = role.ok_or(InfoError::Missing {
        what: WHAT,
        field: "role",
    })?;
    Ok(info)
}

fn is_slave_line(k: &str) -> bool {
    k.strip_prefix("slave")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `slave0:ip=127.0.0.1,port=6380,state=online,offset=100,lag=0`
fn parse_slave_line(k: &str, v: &str) -> Result<ConnectedReplica, InfoError> {
    const WHAT: &str = "INFO replication";
    let (mut ip, mut port, mut state, mut offset) = (None, None, String::new(), 0i64);
    for item in v.split(',') {
        let Some((ik, iv)) = item.split_once('=') else {
            return Err(bad(WHAT, k, v));
        };
        match ik {
            "ip" => ip = Some(iv),
            "port" => port = Some(iv.parse::<u16>().map_err(|_| bad(WHAT, k, v))?),
            "state" => state = iv.to_string(),
            "offset" => offset = iv.parse::<i64>().map_err(|_| bad(WHAT, k, v))?,
            _ => {}
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(bad(WHAT, k, v));
    };
    let addr = Addr::new(ip, port).map_err(|_| bad(WHAT, k, v))?;
    Ok(ConnectedReplica {
        addr,
        state,
        offset,
    })
}

/// The `run_id` of `INFO server` (40 hex characters).
pub fn parse_run_id(text: &str) -> Result<String, InfoError> {
    const WHAT: &str = "INFO server";
    check_text(WHAT, text)?;
    let (_, v) = fields(text)
        .find(|(k, _)| *k == "run_id")
        .ok_or(InfoError::Missing {
            what: WHAT,
            field: "run_id",
        })?;
    if v.len() != 40 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(WHAT, "run_id", v));
    }
    Ok(v.to_string())
}

/// Keys in every database, from `INFO keyspace` (`db<N>:keys=<n>,expires=...` lines; none
/// when the instance is empty). Counting db 0 alone would take a master that lost
/// everything in db 3 for an empty one that lost nothing.
pub fn parse_keyspace_keys(text: &str) -> Result<i64, InfoError> {
    const WHAT: &str = "INFO keyspace";
    check_text(WHAT, text)?;
    let mut total: i64 = 0;
    for (k, v) in fields(text) {
        let Some(n) = k.strip_prefix("db") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(WHAT, k, v));
        }
        let keys = v
            .split(',')
            .find_map(|kv| kv.strip_prefix("keys="))
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad(WHAT, k, v))?;
        total = total.saturating_add(keys);
    }
    Ok(total)
}

/// A `ROLE` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleReply {
    /// `master`, its offset and its connected replicas (address, acknowledged offset).
    Master {
        /// Replication offset.
        offset: i64,
        /// Connected replicas.
        replicas: Vec<(Addr, i64)>,
    },
    /// `slave`, its master and link state (`connect`, `connecting`, `sync`, `connected`).
    Replica {
        /// Master it follows.
        master: Addr,
        /// Link state.
        state: String,
        /// Data received from the master (-1 before the first sync).
        offset: i64,
    },
    /// The port is a Sentinel.
    Sentinel,
}

impl RoleReply {
    /// The role as the view records it (`None` for a Sentinel).
    pub fn reported(&self) -> Option<ReportedRole> {
        match self {
            RoleReply::Master { .. } => Some(ReportedRole::Master),
            RoleReply::Replica { .. } => Some(ReportedRole::Replica),
            RoleReply::Sentinel => None,
        }
    }
}

/// Text of a bulk or simple string; `None` for any other value.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => value_text(other)?.parse().ok(),
    }
}

/// Parses a `ROLE` reply.
pub fn parse_role(v: &Value) -> Result<RoleReply, InfoError> {
    const WHAT: &str = "ROLE";
    let shape = |detail: &str| InfoError::Shape {
        what: WHAT,
        detail: detail.to_string(),
    };
    let Value::Array(items) = v else {
        return Err(shape("not an array"));
    };
    let kind = items
        .first()
        .and_then(value_text)
        .ok_or_else(|| shape("no role name"))?;
    match kind.as_str() {
        "master" => {
            let offset = items
                .get(1)
                .and_then(value_int)
                .ok_or_else(|| shape("master without an offset"))?;
            let mut replicas = Vec::new();
            if let Some(Value::Array(list)) = items.get(2) {
                for r in list {
                    let Value::Array(f) = r else {
                        return Err(shape("replica entry is not an array"));
                    };
                    let host = f.first().and_then(value_text);
                    let port = f.get(1).and_then(value_int);
                    let off = f.get(2).and_then(value_int).unwrap_or(0);
                    let addr = match (host, port.and_then(|p| u16::try_from(p).ok())) {
                        (Some(h), Some(p)) => Addr::new(h, p).map_err(|e| shape(&e.to_string()))?,
                        _ => return Err(shape("replica entry without host and port")),
                    };
                    replicas.push((addr, off));
                }
            }
            Ok(RoleReply::Master { offset, replicas })
        }
        "slave" | "replica" => {
            let host = items.get(1).and_then(value_text);
            let port = items
                .get(2)
                .and_then(value_int)
                .and_then(|p| u16::try_from(p).ok());
            let (Some(host), Some(port)) = (host, port) else {
                return Err(shape("replica without master host and port"));
            };
            let master = Addr::new(host, port).map_err(|e| shape(&e.to_string()))?;
            let state = items.get(3).and_then(value_text).unwrap_or_default();
            let offset = items.get(4).and_then(value_int).unwrap_or(-1);
            Ok(RoleReply::Replica {
                master,
                state,
                offset,
            })
        }
        "sentinel" => Ok(RoleReply::Sentinel),
        other => Err(InfoError::BadField {
            what: WHAT,
            field: "role".into(),
            value: other.chars().take(64).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_counts_every_database() {
        let text =
            "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\ndb3:keys=40,expires=1,avg_ttl=5\r\n";
        assert_eq!(parse_keyspace_keys(text), Ok(42));
        assert_eq!(parse_keyspace_keys("# Keyspace\r\n"), Ok(0));
        assert!(parse_keyspace_keys("db3:keys=x").is_err());
        assert!(parse_keyspace_keys("dbx:keys=1").is_err());
    }

    const MASTER: &str = include_str!("../../tests/fixtures/monitor-info-master.txt");
    const MASTER_HANDSHAKE: &str =
        include_str!("../../tests/fixtures/monitor-info-master-handshake.txt");
    const REPLICA: &str = include_str!("../../tests/fixtures/monitor-info-replica.txt");
    const REPLICA_LINKDOWN: &str =
        include_str!("../../tests/fixtures/monitor-info-replica-linkdown.txt");
    const ROLE_MASTER: &[u8] = include_bytes!("../../tests/fixtures/monitor-role-master.resp");
    const ROLE_REPLICA: &[u8] = include_bytes!("../../tests/fixtures/monitor-role-replica.resp");
    const ROLE_REPLICA_CONNECT: &[u8] =
        include_bytes!("../../tests/fixtures/monitor-role-replica-connect.resp");

    fn addr(s: &str) -> Addr {
        s.parse().unwrap()
    }

    #[test]
    fn master_info_from_redis_7() {
        let i = parse_replication(MASTER).unwrap();
        assert_eq!(i.role, ReportedRole::Master);
        assert_eq!(i.master_repl_offset, 100);
        assert_eq!(i.offset(), 100);
        assert_eq!(
            i.replicas,
            vec![ConnectedReplica {
                addr: addr("127.0.0.1:17002"),
                state: "online".into(),
                offset: 50
            }]
        );
        assert_eq!(
            i.master_replid.as_deref(),
            Some("3f671badadda90f1163f028101e8fe1b71e9aca8")
        );
        assert_eq!(i.failover_state.as_deref(), Some("no-failover"));
        assert_eq!(i.priority, None);
    }

    #[test]
    fn master_info_during_initial_sync() {
        let i = parse_replication(MASTER_HANDSHAKE).unwrap();
        assert_eq!(i.replicas.len(), 1);
        assert_eq!(i.replicas[0].state, "wait_bgsave");
        assert_eq!(i.replicas[0].offset, 0);
    }

    #[test]
    fn replica_info_from_redis_7() {
        let i = parse_replication(REPLICA).unwrap();
        assert_eq!(i.role, ReportedRole::Replica);
        assert_eq!(i.master_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(i.master_port, Some(17001));
        assert!(i.master_link_up);
        assert_eq!(i.master_link_down_secs, None);
        assert_eq!(i.slave_repl_offset, Some(100));
        assert_eq!(i.offset(), 100);
        assert_eq!(i.priority, Some(50));
        assert!(i.replica_announced);
        assert!(i.replicas.is_empty());
    }

    #[test]
    fn replica_info_with_link_down() {
        let i = parse_replication(REPLICA_LINKDOWN).unwrap();
        assert!(!i.master_link_up);
        assert_eq!(i.master_link_down_secs, Some(2));
        assert_eq!(i.offset(), 114);
    }

    #[test]
    fn unix_line_endings_and_unknown_fields_are_fine() {
        let text = "# Replication\nrole:slave\nmaster_host:10.0.0.1\nmaster_port:6379\nnew_field_from_the_future:x\nreplica_announced:0\n";
        let i = parse_replication(text).unwrap();
        assert_eq!(i.role, ReportedRole::Replica);
        assert!(!i.replica_announced);
        assert_eq!(i.slave_repl_offset, None);
    }

    #[test]
    fn garbage_info_is_an_error_not_a_panic() {
        for text in [
            "",
            "HTTP/1.1 400 Bad Request\r\n\r\n",
            "role:primary\r\n",
            "role:master\r\nmaster_repl_offset:lots\r\n",
            "role:slave\r\nmaster_port:99999\r\n",
            "role:master\r\nslave0:ip=1.2.3.4\r\n",
            "role:master\r\nslave0:garbage\r\n",
            "role:master\r\nslave0:ip=,port=1\r\n",
            "role:slave\r\nslave_priority:-1\r\n",
            "\u{0}\u{1}\u{2}:::\r\n",
        ] {
            assert!(parse_replication(text).is_err(), "accepted {text:?}");
        }
        let huge = "x".repeat(MAX_INFO_LEN + 1);
        assert!(matches!(
            parse_replication(&huge),
            Err(InfoError::Shape { .. })
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_replication("role:master\r\nmaster_repl_offset:lots\r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "INFO replication field 'master_repl_offset' has an invalid value 'lots'"
        );
        let e = parse_replication("# Replication\r\n").unwrap_err();
        assert_eq!(e.to_string(), "INFO replication has no 'role' field");
    }

    #[test]
    fn run_id() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrun_id:562349fae92290ce9af0e660660a75f0a69012ef\r\ntcp_port:17001\r\n";
        assert_eq!(
            parse_run_id(text).unwrap(),
            "562349fae92290ce9af0e660660a75f0a69012ef"
        );
        assert!(parse_run_id("run_id:xyz\r\n").is_err());
        assert!(parse_run_id("tcp_port:1\r\n").is_err());
    }

    #[test]
    fn role_replies_from_redis_7() {
        let v = redis::parse_redis_value(ROLE_MASTER).unwrap();
        assert_eq!(
            parse_role(&v).unwrap(),
            RoleReply::Master {
                offset: 100,
                replicas: vec![(addr("127.0.0.1:17002"), 100)]
            }
        );
        let v = redis::parse_redis_value(ROLE_REPLICA).unwrap();
        assert_eq!(
            parse_role(&v).unwrap(),
            RoleReply::Replica {
                master: addr("127.0.0.1:17001"),
                state: "connected".into(),
                offset: 100
            }
        );
        let v = redis::parse_redis_value(ROLE_REPLICA_CONNECT).unwrap();
        let r = parse_role(&v).unwrap();
        assert_eq!(r.reported(), Some(ReportedRole::Replica));
        assert!(
            matches!(r, RoleReply::Replica { ref state, offset: -1, .. } if state == "connect")
        );
    }

    #[test]
    fn garbage_role_is_an_error() {
        let cases = [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::SimpleString("leader".into())]),
            Value::Array(vec![Value::BulkString(b"master".to_vec())]),
            Value::Array(vec![
                Value::BulkString(b"slave".to_vec()),
                Value::BulkString(b"h".to_vec()),
                Value::Int(70000),
            ]),
            Value::Array(vec![
                Value::BulkString(b"master".to_vec()),
                Value::Int(1),
                Value::Array(vec![Value::Int(5)]),
            ]),
            Value::Array(vec![Value::BulkString(vec![0xff, 0xfe])]),
        ];
        for v in cases {
            assert!(parse_role(&v).is_err(), "accepted {v:?}");
        }
        let v = Value::Array(vec![
            Value::BulkString(b"sentinel".to_vec()),
            Value::Array(vec![]),
        ]);
        assert_eq!(parse_role(&v).unwrap(), RoleReply::Sentinel);
    }
}
