//! Connection handshake: `HELLO`, `AUTH`, `PING`. Replies and errors are Redis 7's, byte for
//! byte; the only user is `default`, whose password is `requirepass` (none: any password).

use bytes::Bytes;

use super::{parse_error, Reply, Session, Shared};
use crate::api::resp::frame::{Frame, Protocol};
use crate::api::resp::parse::Parse;
use crate::api::resp::REDIS_VERSION;

const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.";

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `user`/`pass` against the default user. `Ok` also when no password is set
/// (the default user is then `nopass` and accepts anything).
fn authenticate(user: &[u8], pass: &[u8], sh: &Shared) -> Result<(), Frame> {
    if user != b"default" {
        return Err(Frame::error(WRONGPASS));
    }
    match &sh.ctx.requirepass {
        None => Ok(()),
        Some(p) if same_secret(p.as_bytes(), pass) => Ok(()),
        Some(_) => Err(Frame::error(WRONGPASS)),
    }
}

/// `AUTH [username] password`
pub fn auth(p: &mut Parse, s: &mut Session, sh: &Shared) -> Reply {
    let first = match p.next_bytes() {
        Ok(b) => b,
        Err(e) => return parse_error(e).into(),
    };
    let (user, pass) = match p.next_bytes() {
        Ok(pass) => (first, pass),
        Err(_) => {
            if sh.ctx.requirepass.is_none() {
                return Frame::error(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                )
                .into();
            }
            (Bytes::from_static(b"default"), first)
        }
    };
    if p.finish().is_err() {
        return Frame::error("syntax error").into();
    }
    match authenticate(&user, &pass, sh) {
        Ok(()) => {
            s.authed = true;
            Frame::ok().into()
        }
        Err(f) => f.into(),
    }
}

/// Client names and library attributes: printable ASCII without spaces.
pub fn valid_attr(v: &[u8]) -> bool {
    v.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub fn hello(p: &mut Parse, s: &mut Session, sh: &Shared) -> Reply {
    let mut proto = None;
    if p.remaining() > 0 {
        let v = match p.next_int() {
            Ok(v) => v,
            Err(_) => {
                return Frame::error("Protocol version is not an integer or out of range").into()
            }
        };
        proto = match v {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => return Frame::error("-NOPROTO unsupported protocol version").into(),
        };
    }
    let mut creds = None;
    let mut name = None;
    while p.remaining() > 0 {
        let opt = p.next_bytes().expect("remaining > 0");
        if opt.eq_ignore_ascii_case(b"AUTH") && p.remaining() >= 2 {
            let u = p.next_bytes().expect("checked");
            let pw = p.next_bytes().expect("checked");
            creds = Some((u, pw));
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && p.remaining() >= 1 {
            let n = p.next_bytes().expect("checked");
            if !valid_attr(&n) {
                return Frame::error(
                    "Client names cannot contain spaces, newlines or special characters.",
                )
                .into();
            }
            name = Some(n);
        } else {
            return Frame::error(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&opt)
            ))
            .into();
        }
    }
    if let Some((u, pw)) = creds {
        if let Err(f) = authenticate(&u, &pw, sh) {
            return f.into();
        }
        s.authed = true;
    }
    if !s.authed {
        return Frame::error("-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time").into();
    }
    if let Some(n) = name {
        s.handle.meta.lock().name =
            (!n.is_empty()).then(|| String::from_utf8_lossy(&n).into_owned());
    }
    if let Some(proto) = proto {
        s.proto = proto;
        s.publish_meta();
    }
    // Six fields: a Sentinel has no `role` in HELLO (a plain server has seven).
    Frame::Map(vec![
        (Frame::bulk_static("server"), Frame::bulk_static("redis")),
        (
            Frame::bulk_static("version"),
            Frame::bulk_static(REDIS_VERSION),
        ),
        (
            Frame::bulk_static("proto"),
            Frame::Integer(s.proto.version()),
        ),
        (Frame::bulk_static("id"), Frame::Integer(s.handle.id as i64)),
        (Frame::bulk_static("mode"), Frame::bulk_static("sentinel")),
        (Frame::bulk_static("modules"), Frame::Array(Vec::new())),
    ])
    .into()
}

/// `PING [message]`; in RESP2 subscribed mode the reply is `["pong", message-or-""]`.
pub fn ping(p: &mut Parse, s: &Session) -> Reply {
    let msg = p.next_bytes().ok();
    if p.finish().is_err() {
        return super::wrong_arity("ping").into();
    }
    if s.proto == Protocol::Resp2 && s.subscribed() {
        return Frame::Array(vec![
            Frame::bulk_static("pong"),
            Frame::Bulk(msg.unwrap_or_default()),
        ])
        .into();
    }
    match msg {
        Some(m) => Frame::Bulk(m).into(),
        None => Frame::Simple("PONG".into()).into(),
    }
}
