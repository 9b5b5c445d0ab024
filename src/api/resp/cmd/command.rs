//! `COMMAND` and its subcommands, describing only the commands this port serves (as a
//! Sentinel's `COMMAND` describes only the Sentinel table).

use super::table::{self, CmdId, Spec, COMMANDS};
use super::{Reply, Session};
use crate::api::resp::frame::Frame;
use crate::api::resp::parse::Parse;

/// One COMMAND INFO entry: name, arity, flags, first key, last key, step, ACL categories,
/// tips, key specs, subcommands.
fn info_entry(s: &Spec) -> Frame {
    Frame::Array(vec![
        Frame::bulk_static(s.fullname),
        Frame::Integer(s.arity as i64),
        Frame::Set(s.flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Set(s.acl.iter().map(|a| Frame::Simple((*a).into())).collect()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(s.subs.iter().map(info_entry).collect()),
    ])
}

/// One COMMAND DOCS value: summary, since, group, complexity, and subcommands if any.
fn docs_entry(s: &Spec) -> Frame {
    let mut m = vec![
        (Frame::bulk_static("summary"), Frame::bulk_static(s.summary)),
        (Frame::bulk_static("since"), Frame::bulk_static(s.since)),
        (Frame::bulk_static("group"), Frame::bulk_static(s.group)),
        (
            Frame::bulk_static("complexity"),
            Frame::bulk_static(s.complexity),
        ),
    ];
    if s.is_container() {
        m.push((
            Frame::bulk_static("subcommands"),
            Frame::Map(
                s.subs
                    .iter()
                    .map(|c| (Frame::bulk_static(c.fullname), docs_entry(c)))
                    .collect(),
            ),
        ));
    }
    Frame::Map(m)
}

/// `COMMAND` without a subcommand: every entry.
pub fn all(_s: &Session) -> Reply {
    Frame::Array(COMMANDS.iter().map(info_entry).collect()).into()
}

/// Finds `name` or `container|sub`.
fn find(name: &str) -> Option<&'static Spec> {
    match name.split_once('|') {
        None => table::lookup(name.as_bytes()),
        Some((c, sub)) => table::lookup(c.as_bytes())?.sub(sub.as_bytes()),
    }
}

/// Runs a COMMAND subcommand.
pub fn run(id: CmdId, p: &mut Parse) -> Reply {
    match id {
        CmdId::CommandCount => Frame::Integer(COMMANDS.len() as i64).into(),
        CmdId::CommandList => {
            if p.remaining() > 0 {
                // FILTERBY needs ACL and module data this port does not have.
                return Frame::error("syntax error").into();
            }
            let mut names = Vec::new();
            for c in &COMMANDS {
                names.push(Frame::bulk_static(c.fullname));
                names.extend(c.subs.iter().map(|s| Frame::bulk_static(s.fullname)));
            }
            Frame::Array(names).into()
        }
        CmdId::CommandInfo => {
            if p.remaining() == 0 {
                return Frame::Array(COMMANDS.iter().map(info_entry).collect()).into();
            }
            let mut out = Vec::new();
            while let Ok(n) = p.next_string() {
                out.push(find(&n).map_or(Frame::Null, info_entry));
            }
            Frame::Array(out).into()
        }
        CmdId::CommandDocs => {
            let mut out = Vec::new();
            if p.remaining() == 0 {
                for c in &COMMANDS {
                    out.push((Frame::bulk_static(c.fullname), docs_entry(c)));
                }
            }
            while let Ok(n) = p.next_string() {
                if let Some(s) = find(&n) {
                    out.push((Frame::bulk_static(s.fullname), docs_entry(s)));
                }
            }
            Frame::Map(out).into()
        }
        CmdId::CommandGetkeys => {
            let name = p.next_bytes().expect("arity checked");
            let mut argc = 1 + p.remaining();
            let mut spec = table::lookup(&name);
            if let Some(c) = spec.filter(|c| c.is_container()) {
                spec = match p.next_bytes() {
                    Ok(sub) => {
                        argc = argc.max(2);
                        c.sub(&sub)
                    }
                    Err(_) => Some(c),
                };
            }
            match spec {
                None => Frame::error("Invalid command specified").into(),
                Some(s) if !s.arity_ok(argc) => {
                    Frame::error("Invalid number of arguments specified for command").into()
                }
                Some(_) => Frame::error("The command has no key arguments").into(),
            }
        }
        _ => {
            let lines = [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "HELP",
                "    Print this help.",
            ];
            Frame::Array(lines.iter().map(|l| Frame::Simple((*l).into())).collect()).into()
        }
    }
}
