//! The hot path: `SENTINEL GET-MASTER-ADDR-BY-NAME` (and Valkey's `GET-PRIMARY-ADDR-BY-NAME`),
//! the command most client libraries send on every (re)connect and that load balancers and
//! health checks poll.
//!
//! Its replies depend only on the applied state, so they are encoded once per applied state
//! version, for both protocols, into an [`AddrTable`] shared by every connection. A
//! connection keeps its own [`AddrView`]: a receiver of the applied state and the table
//! built for it. Answering is then a version check (one atomic load), a map lookup and a
//! copy of the encoded bytes: no lock, no allocation, no reference-count traffic shared with
//! other connections. The table is rebuilt only when the state changes, and the view sees
//! the new state as soon as [`RaftHandle::state`] does, so this path and the general one
//! always answer from the same state.
//!
//! [`RaftHandle::state`]: crate::consensus::RaftHandle::state

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::cmd::sentinel::get_master_addr;
use super::frame::{Frame, Heads, Limits, Protocol};
use crate::fsm::ClusterState;

/// Full command name of the lookup (CLIENT LIST `cmd=`), as the command table spells it.
pub const LOOKUP_FULLNAME: &str = "sentinel|get-master-addr-by-name";

/// Whether the request measured into `heads` is a master-address lookup; returns the index of
/// the name argument. Matches what the command table resolves (case-insensitive command and
/// subcommand, both spellings, exactly one argument).
pub fn is_addr_lookup(buf: &[u8], heads: &Heads) -> bool {
    heads.count == 3 && heads.arg(buf, 0).eq_ignore_ascii_case(b"sentinel") && {
        let sub = heads.arg(buf, 1);
        sub.eq_ignore_ascii_case(b"get-master-addr-by-name")
            || sub.eq_ignore_ascii_case(b"get-primary-addr-by-name")
    }
}

/// A lookup's first two arguments and the `$` of the third, as clients frame them, in the
/// two spellings (compared ignoring ASCII case).
const LOOKUP_HEADS: [&[u8]; 2] = [
    b"*3\r\n$8\r\nsentinel\r\n$23\r\nget-master-addr-by-name\r\n$",
    b"*3\r\n$8\r\nsentinel\r\n$24\r\nget-primary-addr-by-name\r\n$",
];

/// [`LOOKUP_HEADS`]' first form as clients usually spell it.
const LOOKUP_USUAL: &[u8] = b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$";

/// A whole lookup at the front of `buf`, recognised without the general parser: the
/// request's length and where its name is. Only the plain form clients send is taken (a name
/// of at most 9999 bytes, canonical lengths, CRLF everywhere, within `limits`); anything else,
/// including other valid forms, is None and left to the general parser, which then sees
/// the same bytes, so both paths answer alike.
pub fn match_lookup(buf: &[u8], limits: &Limits) -> Option<(usize, (usize, usize))> {
    // The spelling nearly every client sends, compared exactly first (a plain memcmp),
    // before the case-insensitive comparison.
    let at = if buf.len() > LOOKUP_USUAL.len() && buf.starts_with(LOOKUP_USUAL) {
        LOOKUP_USUAL.len()
    } else {
        LOOKUP_HEADS
            .iter()
            .find(|h| buf.len() > h.len() && buf[..h.len()].eq_ignore_ascii_case(h))?
            .len()
    };
    let digits = buf[at..].iter().take(5).position(|&c| c == b'\r')?;
    if digits == 0 || (digits > 1 && buf[at] == b'0') {
        return None;
    }
    let mut len = 0usize;
    for &c in &buf[at..at + digits] {
        if !c.is_ascii_digit() {
            return None;
        }
        len = len * 10 + usize::from(c - b'0');
    }
    let name = at + digits + 2;
    let end = name + len + 2;
    if len > limits.max_bulk_len
        || end > limits.max_request_len
        || buf.len() < end
        || buf[name - 1] != b'\n'
        || &buf[end - 2..end] != b"\r\n"
    {
        return None;
    }
    Some((end, (name, len)))
}

/// Encoded replies of every master's lookup for one applied state.
#[derive(Debug)]
pub struct AddrTable {
    /// The state the replies were computed from.
    state: Arc<ClusterState>,
    /// Per master name: the reply in RESP2 and in RESP3 (index [`proto_index`]).
    replies: BTreeMap<Box<[u8]>, [Bytes; 2]>,
    /// The reply to an unknown name, per protocol.
    unknown: [Bytes; 2],
}

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Resp2 => 0,
        Protocol::Resp3 => 1,
    }
}

fn encode_both(f: &Frame) -> [Bytes; 2] {
    [Protocol::Resp2, Protocol::Resp3].map(|p| {
        let mut b = BytesMut::new();
        f.encode(p, &mut b);
        b.freeze()
    })
}

impl AddrTable {
    /// Encodes every master's reply from `state`, with the same function the general path
    /// uses, so the bytes are identical.
    pub fn build(state: Arc<ClusterState>) -> AddrTable {
        let replies = state
            .masters
            .keys()
            .map(|name| {
                let reply = get_master_addr(&state, name.as_bytes());
                (name.as_bytes().into(), encode_both(&reply))
            })
            .collect();
        AddrTable {
            replies,
            unknown: encode_both(&get_master_addr(&state, b"")),
            state,
        }
    }

    /// The encoded reply to a lookup of `name`.
    pub fn reply(&self, name: &[u8], proto: Protocol) -> &[u8] {
        let i = proto_index(proto);
        match self.replies.get(name) {
            Some(r) => &r[i],
            None => &self.unknown[i],
        }
    }
}

/// The table of the newest applied state, shared by every connection of the port. Touched
/// only when a connection notices a new state.
#[derive(Debug, Default)]
pub struct AddrTables {
    current: parking_lot::Mutex<Option<Arc<AddrTable>>>,
}

impl AddrTables {
    /// The table for `state`, built by the first connection that needs it.
    pub fn for_state(&self, state: Arc<ClusterState>) -> Arc<AddrTable> {
        let mut cur = self.current.lock();
        if let Some(t) = cur.as_ref() {
            if Arc::ptr_eq(&t.state, &state) {
                return t.clone();
            }
        }
        let t = Arc::new(AddrTable::build(state));
        *cur = Some(t.clone());
        t
    }
}

/// One connection's view: the applied state it last saw and the table for it.
#[derive(Debug)]
pub struct AddrView {
    rx: watch::Receiver<Arc<ClusterState>>,
    table: Arc<AddrTable>,
}

impl AddrView {
    /// A view that follows `rx`.
    pub fn new(mut rx: watch::Receiver<Arc<ClusterState>>, tables: &AddrTables) -> AddrView {
        let state = rx.borrow_and_update().clone();
        AddrView {
            rx,
            table: tables.for_state(state),
        }
    }

    /// The table for the newest applied state.
    pub fn current(&mut self, tables: &AddrTables) -> &AddrTable {
        // Err: the node is stopping; the last state is as good as any until the port closes.
        if self.rx.has_changed().unwrap_or(false) {
            let state = self.rx.borrow_and_update().clone();
            self.table = tables.for_state(state);
        }
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resp::frame::{check_heads, Check};

    fn heads(req: &[u8]) -> Heads {
        let mut h = Heads::default();
        let c = check_heads(req, &Limits::default(), true, &mut h).unwrap();
        assert!(matches!(c, Check::Request { .. }));
        h
    }

    #[test]
    fn recognises_both_spellings_in_any_case_and_nothing_else() {
        for req in [
            &b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$1\r\nm\r\n"[..],
            b"*3\r\n$8\r\nsentinel\r\n$23\r\nGET-MASTER-ADDR-BY-NAME\r\n$0\r\n\r\n",
            b"*3\r\n$8\r\nSeNtInEl\r\n$24\r\nget-primary-addr-by-name\r\n$2\r\nab\r\n",
        ] {
            assert!(is_addr_lookup(req, &heads(req)));
        }
        for req in [
            // Wrong arity goes to the general path, which sends the arity error.
            &b"*2\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n"[..],
            b"*4\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$1\r\nm\r\n$1\r\nx\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$6\r\nmaster\r\n$1\r\nm\r\n",
            b"*3\r\n$7\r\nsentine\r\n$23\r\nget-master-addr-by-name\r\n$1\r\nm\r\n",
        ] {
            assert!(!is_addr_lookup(req, &heads(req)));
        }
        // Inline requests are never recorded.
        let mut h = Heads::default();
        let inline = b"SENTINEL get-master-addr-by-name m\r\n";
        check_heads(inline, &Limits::default(), true, &mut h).unwrap();
        assert_eq!(h.count, 0);
        assert!(!is_addr_lookup(inline, &h));
    }

    /// The shortcut recognises the usual framing of both spellings in any case, and
    /// whatever it takes the general parser reads the same way: on every prefix of a set of
    /// requests, valid or not.
    #[test]
    fn shortcut_agrees_with_the_general_parser() {
        let limits = Limits::default();
        let reqs: [&[u8]; 12] = [
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n",
            b"*3\r\n$8\r\nsentinel\r\n$24\r\nGET-PRIMARY-ADDR-BY-NAME\r\n$0\r\n\r\n",
            b"*3\r\n$8\r\nSeNtInEl\r\n$23\r\nGet-Master-Addr-By-Name\r\n$10\r\n0123456789\r\n",
            // Not canonical, or not CRLF: the general parser's business.
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$08\r\nmymaster\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\rxmymaster\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymasterXY",
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$-1\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$+8\r\nmymaster\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$12345\r\nx\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n*8\r\nmymaster\r\n",
            b"*3\r\n$8\r\nSENTINEL\r\n$6\r\nmaster\r\n$8\r\nmymaster\r\n",
            b"*4\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$1\r\nm\r\n$1\r\nx\r\n",
        ];
        for (i, req) in reqs.iter().enumerate() {
            let mut buf = req.to_vec();
            buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            for cut in 0..=buf.len() {
                let b = &buf[..cut];
                let Some((len, (at, n))) = match_lookup(b, &limits) else {
                    assert!(i > 2 || cut < req.len(), "request {i} not recognised");
                    continue;
                };
                let mut h = Heads::default();
                let general = check_heads(b, &limits, true, &mut h);
                assert!(
                    matches!(general, Ok(Check::Request { len: l, .. }) if l == len),
                    "request {i} cut {cut}: {general:?}"
                );
                assert!(is_addr_lookup(b, &h));
                assert_eq!(h.args[2], (at, n));
            }
        }
        // The limits hold on this path too.
        let tight = Limits {
            max_bulk_len: 4,
            ..Limits::default()
        };
        assert!(match_lookup(reqs[0], &tight).is_none());
    }

    #[test]
    fn table_bytes_equal_the_general_path() {
        let mut st = ClusterState::default();
        let spec = crate::fsm::MasterSpec {
            down_after_ms: 1000,
            failover_timeout_ms: 1000,
            ..crate::fsm::MasterSpec::new(
                "mymaster",
                crate::model::Addr::new("10.0.0.1".to_string(), 6379).unwrap(),
                2,
            )
        };
        let r = st.apply(1, &crate::fsm::Command::Monitor { spec });
        assert!(r.result.is_ok(), "{r:?}");
        let st = Arc::new(st);
        let tables = AddrTables::default();
        let t = tables.for_state(st.clone());
        assert!(Arc::ptr_eq(&t, &tables.for_state(st.clone())));
        for p in [Protocol::Resp2, Protocol::Resp3] {
            for name in [&b"mymaster"[..], b"other", b"", b"\xff"] {
                let mut want = BytesMut::new();
                get_master_addr(&st, name).encode(p, &mut want);
                assert_eq!(t.reply(name, p), &want[..]);
            }
        }
        assert_eq!(
            t.reply(b"mymaster", Protocol::Resp2),
            b"*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n"
        );
        assert_eq!(t.reply(b"nope", Protocol::Resp2), b"*-1\r\n");
        assert_eq!(t.reply(b"nope", Protocol::Resp3), b"_\r\n");
    }
}
