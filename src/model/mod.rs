//! Pure domain types shared by every layer: node ids, Redis instance addresses, epochs.
//!
//! Nothing here knows about tokio, the network, Redis connections or Raft.

pub mod args;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Identifier of a coordinator node; also its Raft id. Always greater than zero.
pub type NodeId = u64;

/// A configuration epoch. Epochs only ever increase; each failover takes a new one.
pub type Epoch = u64;

/// Address of a Redis instance (or of a coordinator port) as `host:port`.
///
/// Serialized as the string form so it can key JSON maps in snapshots.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Addr {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port, never zero.
    pub port: u16,
}

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// No `:port` part.
    #[error("'{0}' is not of the form host:port")]
    MissingPort(String),
    /// Port is not a number in 1..=65535.
    #[error("'{0}' has an invalid port (1-65535)")]
    BadPort(String),
    /// Host part is empty or contains whitespace.
    #[error("'{0}' has an invalid host")]
    BadHost(String),
}

impl Addr {
    /// Builds an address after checking host and port.
    pub fn new(host: impl Into<String>, port: u16) -> Result<Self, AddrError> {
        let host = host.into();
        if port == 0 {
            return Err(AddrError::BadPort(format!("{host}:{port}")));
        }
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddrError::BadHost(format!("{host}:{port}")));
        }
        Ok(Addr { host, port })
    }

    /// The port as a decimal string, the form Sentinel replies use.
    pub fn port_string(&self) -> String {
        self.port.to_string()
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| AddrError::MissingPort(s.to_string()))?;
            (h, p)
        } else {
            s.rsplit_once(':')
                .ok_or_else(|| AddrError::MissingPort(s.to_string()))?
        };
        let port: u16 = port
            .parse()
            .map_err(|_| AddrError::BadPort(s.to_string()))?;
        Addr::new(host, port).map_err(|e| match e {
            AddrError::BadPort(_) => AddrError::BadPort(s.to_string()),
            _ => AddrError::BadHost(s.to_string()),
        })
    }
}

impl TryFrom<String> for Addr {
    type Error = AddrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Addr> for String {
    fn from(a: Addr) -> String {
        a.to_string()
    }
}

/// Redis-style glob matching (`*`, `?`, `[...]` with ranges and `^`, `\` escapes), as used by
/// `SENTINEL RESET` and `PSUBSCRIBE`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion,
    // so hostile patterns cannot blow the stack.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one `[...]` class starting at `pattern[start] == '['`. Returns whether `c`
/// matched and the index after the class, or `None` when the class is unterminated.
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < pattern.len() && pattern[i] == b'^';
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = if pattern[i] <= pattern[i + 2] {
                (pattern[i], pattern[i + 2])
            } else {
                (pattern[i + 2], pattern[i])
            };
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    if i >= pattern.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_round_trips() {
        let a: Addr = "127.0.0.1:6379".parse().unwrap();
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, 6379);
        assert_eq!(a.to_string(), "127.0.0.1:6379");
        let v6: Addr = "[::1]:26379".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:26379");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"127.0.0.1:6379\"");
        assert_eq!(serde_json::from_str::<Addr>(&json).unwrap(), a);
    }

    #[test]
    fn addr_rejects_garbage() {
        assert!(matches!(
            "localhost".parse::<Addr>(),
            Err(AddrError::MissingPort(_))
        ));
        assert!(matches!("h:0".parse::<Addr>(), Err(AddrError::BadPort(_))));
        assert!(matches!(
            "h:70000".parse::<Addr>(),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            ":6379".parse::<Addr>(),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            "a b:1".parse::<Addr>(),
            Err(AddrError::BadHost(_))
        ));
    }

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"*", b"mymaster"));
        assert!(glob_match(b"my*", b"mymaster"));
        assert!(glob_match(b"*master", b"mymaster"));
        assert!(glob_match(b"m?master", b"mymaster"));
        assert!(!glob_match(b"m?master", b"master"));
        assert!(glob_match(b"[a-z]ymaster", b"mymaster"));
        assert!(glob_match(b"[^x]ymaster", b"mymaster"));
        assert!(!glob_match(b"[^m]ymaster", b"mymaster"));
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"\\*", b"a"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"a"));
        assert!(glob_match(b"[abc", b"[abc"));
    }
}
