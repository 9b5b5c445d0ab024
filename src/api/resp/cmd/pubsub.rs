//! `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE`, `PUNSUBSCRIBE`, and turning applied events into
//! `message`/`pmessage` frames (RESP3 push frames after `HELLO 3`).
//!
//! Channels are Sentinel's event names (`+switch-master`, `+sdown`, ...). Events come from
//! entries applied on this node, so every node publishes every cluster-wide event. `+sdown` and
//! `-sdown` describe one node's own view; a node publishes only its own, as a Sentinel does.

use bytes::Bytes;

use super::{Reply, Session, Shared};
use crate::api::resp::frame::Frame;
use crate::api::resp::parse::Parse;
use crate::consensus::AppliedEvent;
use crate::model::{glob_match, NodeId};

fn confirmation(kind: &'static str, name: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk_static(kind),
        name.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count as i64),
    ])
}

/// `SUBSCRIBE ch [ch ...]` / `PSUBSCRIBE pattern [pattern ...]`: one confirmation each.
pub fn subscribe(p: &mut Parse, s: &mut Session, sh: &Shared, pattern: bool) -> Reply {
    if s.events.is_none() {
        s.events = Some(sh.ctx.raft.subscribe_events());
    }
    let mut out = Vec::new();
    while let Ok(name) = p.next_bytes() {
        let list = if pattern {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        if !list.contains(&name) {
            list.push(name.clone());
        }
        let kind = if pattern { "psubscribe" } else { "subscribe" };
        out.push(confirmation(kind, Some(name), s.subscription_count()));
    }
    s.publish_meta();
    Reply::Many(out)
}

/// `UNSUBSCRIBE [ch ...]` / `PUNSUBSCRIBE [pattern ...]`; without names, all of them, and a
/// single confirmation with a null name when there was nothing to leave.
pub fn unsubscribe(p: &mut Parse, s: &mut Session, pattern: bool) -> Reply {
    let kind = if pattern {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let mut names = Vec::new();
    while let Ok(n) = p.next_bytes() {
        names.push(n);
    }
    let all = names.is_empty();
    if all {
        names = if pattern {
            s.patterns.clone()
        } else {
            s.channels.clone()
        };
    }
    let mut out = Vec::new();
    for name in names {
        let list = if pattern {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        list.retain(|c| c != &name);
        out.push(confirmation(kind, Some(name), s.subscription_count()));
    }
    if all && out.is_empty() {
        out.push(confirmation(kind, None, s.subscription_count()));
    }
    if !s.subscribed() {
        // No more events to receive: stop holding a slot in the broadcast.
        s.events = None;
    }
    s.publish_meta();
    Reply::Many(out)
}

/// The frames one applied event produces for this client: a `message` per matching channel,
/// then a `pmessage` per matching pattern (Redis's order).
pub fn deliver(ev: &AppliedEvent, s: &Session, me: NodeId) -> Vec<Frame> {
    let e = &ev.event;
    if e.node.is_some_and(|n| n != me) {
        return Vec::new();
    }
    let ch = e.kind.as_bytes();
    let mut out = Vec::new();
    if s.channels.iter().any(|c| c.as_ref() == ch) {
        out.push(Frame::Push(vec![
            Frame::bulk_static("message"),
            Frame::bulk(e.kind.clone()),
            Frame::bulk(e.payload.clone()),
        ]));
    }
    for pat in &s.patterns {
        if glob_match(pat, ch) {
            out.push(Frame::Push(vec![
                Frame::bulk_static("pmessage"),
                Frame::Bulk(pat.clone()),
                Frame::bulk(e.kind.clone()),
                Frame::bulk(e.payload.clone()),
            ]));
        }
    }
    out
}
