//! `CLIENT` subcommands with Redis's replies: ID, GETNAME, SETNAME, SETINFO, INFO, LIST,
//! KILL, NO-EVICT, HELP.

use tokio::time::Instant;

use super::hello::valid_attr;
use super::table::CmdId;
use super::{parse_error, Reply, Session, Shared};
use crate::api::resp::frame::Frame;
use crate::api::resp::parse::Parse;

/// Runs a CLIENT subcommand.
pub fn run(id: CmdId, p: &mut Parse, s: &mut Session, sh: &Shared) -> Reply {
    match id {
        CmdId::ClientId => Frame::Integer(s.handle.id as i64).into(),
        CmdId::ClientGetname => match s.handle.meta.lock().name.clone() {
            Some(n) => Frame::bulk(n).into(),
            None => Frame::Null.into(),
        },
        CmdId::ClientSetname => {
            let n = p.next_bytes().expect("arity checked");
            if !valid_attr(&n) {
                return Frame::error(
                    "Client names cannot contain spaces, newlines or special characters.",
                )
                .into();
            }
            s.handle.meta.lock().name =
                (!n.is_empty()).then(|| String::from_utf8_lossy(&n).into_owned());
            Frame::ok().into()
        }
        CmdId::ClientSetinfo => {
            let attr = p.next_string().expect("arity checked");
            let val = p.next_bytes().expect("arity checked");
            let lower = attr.to_ascii_lowercase();
            if lower != "lib-name" && lower != "lib-ver" {
                return Frame::error(format!("Unrecognized option '{attr}'")).into();
            }
            if !valid_attr(&val) {
                return Frame::error(format!(
                    "{attr} cannot contain spaces, newlines or special characters."
                ))
                .into();
            }
            let v = (!val.is_empty()).then(|| String::from_utf8_lossy(&val).into_owned());
            let mut m = s.handle.meta.lock();
            if lower == "lib-name" {
                m.lib_name = v;
            } else {
                m.lib_ver = v;
            }
            Frame::ok().into()
        }
        CmdId::ClientInfo => {
            s.publish_meta();
            Frame::bulk(format!("{}\n", s.handle.line(Instant::now()))).into()
        }
        CmdId::ClientList => list(p, s, sh),
        CmdId::ClientKill => kill(p, s, sh),
        CmdId::ClientNoEvict => {
            let v = p.next_string().expect("arity checked").to_ascii_lowercase();
            if v == "on" || v == "off" {
                // Nothing is ever evicted here; the switch is accepted like Redis does.
                Frame::ok().into()
            } else {
                Frame::error("syntax error").into()
            }
        }
        _ => help(),
    }
}

fn help() -> Reply {
    let lines = [
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made from the specified address",
        "    * LADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Kill connections by type.",
        "    * USER <username>",
        "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)",
        "      Skip killing current connection (default: yes).",
        "    * ID <client-id>",
        "      Kill connections by client id.",
        "    * MAXAGE <maxage>",
        "      Kill connections older than the specified age.",
        "LIST [options ...]",
        "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Return clients of specified type.",
        "    * ID <client-id> [<client-id> ...]",
        "      Return clients of specified IDs only.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "SETINFO <option> <value>",
        "    Set client meta attr. Options are:",
        "    * LIB-NAME: the client lib name.",
        "    * LIB-VER: the client lib version.",
        "NO-EVICT (ON|OFF)",
        "    Protect current client connection from eviction.",
        "HELP",
        "    Print this help.",
    ];
    Frame::Array(lines.iter().map(|l| Frame::Simple((*l).into())).collect()).into()
}

/// Which clients a TYPE filter selects; None for an unknown type name.
fn type_filter(t: &str) -> Option<fn(&super::ClientHandle) -> bool> {
    match t.to_ascii_lowercase().as_str() {
        "normal" => Some(|c| !c.is_pubsub()),
        "pubsub" => Some(|c| c.is_pubsub()),
        // This port has no replication links.
        "master" | "replica" | "slave" => Some(|_| false),
        _ => None,
    }
}

/// `CLIENT LIST [TYPE type] [ID id ...]`
fn list(p: &mut Parse, s: &Session, sh: &Shared) -> Reply {
    s.publish_meta();
    let mut ty: Option<fn(&super::ClientHandle) -> bool> = None;
    let mut ids: Option<Vec<u64>> = None;
    while let Ok(opt) = p.next_string() {
        match opt.to_ascii_lowercase().as_str() {
            "type" => {
                let Ok(t) = p.next_string() else {
                    return Frame::error("syntax error").into();
                };
                match type_filter(&t) {
                    Some(f) => ty = Some(f),
                    None => return Frame::error(format!("Unknown client type '{t}'")).into(),
                }
            }
            "id" => {
                let mut v = Vec::new();
                while p.remaining() > 0 {
                    match p.next_int() {
                        Ok(i) if i > 0 => v.push(i as u64),
                        _ => return Frame::error("Invalid client ID").into(),
                    }
                }
                if v.is_empty() {
                    return Frame::error("syntax error").into();
                }
                ids = Some(v);
            }
            _ => return Frame::error("syntax error").into(),
        }
    }
    let now = Instant::now();
    let mut out = String::new();
    for c in sh.clients.all() {
        if ty.is_some_and(|f| !f(&c)) || ids.as_ref().is_some_and(|v| !v.contains(&c.id)) {
            continue;
        }
        out.push_str(&c.line(now));
        out.push('\n');
    }
    Frame::bulk(out).into()
}

/// `CLIENT KILL ip:port` (old form: `+OK` or an error) or `CLIENT KILL <filter> <value> ...`
/// (new form: the number of clients killed).
fn kill(p: &mut Parse, s: &mut Session, sh: &Shared) -> Reply {
    let now = Instant::now();
    if p.remaining() == 1 {
        let addr = p.next_string().expect("checked");
        let found = sh
            .clients
            .all()
            .into_iter()
            .find(|c| c.addr.to_string() == addr);
        return match found {
            Some(c) => {
                kill_one(&c, s);
                Frame::ok().into()
            }
            None => Frame::error("No such client").into(),
        };
    }
    let mut ty: Option<fn(&super::ClientHandle) -> bool> = None;
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut user = None;
    let mut maxage = None;
    let mut skipme = true;
    while p.remaining() > 0 {
        let opt = p.next_string().expect("checked").to_ascii_lowercase();
        let Ok(val) = p.next_string() else {
            return Frame::error("syntax error").into();
        };
        match opt.as_str() {
            "id" => match super::super::parse::parse_int(val.as_bytes()) {
                Some(i) if i > 0 => id = Some(i as u64),
                _ => return Frame::error("client-id should be greater than 0").into(),
            },
            "type" => match type_filter(&val) {
                Some(f) => ty = Some(f),
                None => return Frame::error(format!("Unknown client type '{val}'")).into(),
            },
            "addr" => addr = Some(val),
            "laddr" => laddr = Some(val),
            "user" => user = Some(val),
            "skipme" => match val.to_ascii_lowercase().as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => return Frame::error("syntax error").into(),
            },
            "maxage" => match super::super::parse::parse_int(val.as_bytes()) {
                Some(a) if a >= 0 => maxage = Some(a as u64),
                _ => return parse_error(super::super::parse::ParseError::NotInteger).into(),
            },
            _ => return Frame::error("syntax error").into(),
        }
    }
    let mut killed = 0;
    for c in sh.clients.all() {
        if id.is_some_and(|i| i != c.id)
            || ty.is_some_and(|f| !f(&c))
            || addr.as_ref().is_some_and(|a| *a != c.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != c.laddr.to_string())
            || user.as_ref().is_some_and(|u| u != "default")
            || maxage.is_some_and(|a| now.saturating_duration_since(c.created).as_secs() < a)
            || (skipme && c.id == s.handle.id)
        {
            continue;
        }
        kill_one(&c, s);
        killed += 1;
    }
    Frame::Integer(killed).into()
}

fn kill_one(c: &super::ClientHandle, s: &mut Session) {
    if c.id == s.handle.id {
        // Redis answers first, then closes its own connection.
        s.close_after_reply = true;
    } else {
        c.kill.fire();
    }
}
