//! `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE`, `PUNSUBSCRIBE`, and turning applied events into
//! `message`/`pmessage` frames (RESP3 push frames after `HELLO 3`).
//!
//! Channels are Sentinel's event names (`+switch-master`, `+sdown`, ...). Events come from
//! entries applied on this node, so every node publishes every cluster-wide event. `+sdown` and
//! `-sdown` describe one node's own view; a node publishes only its own, as a Sentinel does.
//! `+tilt`/`-tilt` come from this node alone (see [`crate::api::resp::node_events`]).

use std::collections::HashMap;

use bytes::Bytes;

use super::{Reply, Session, Shared};
use crate::api::resp::frame::Frame;
use crate::api::resp::node_events::LocalEvent;
use crate::api::resp::parse::Parse;
use crate::consensus::AppliedEvent;
use crate::model::{glob_match, NodeId};

/// Names subscribed, in subscription order, with O(1) insert, lookup and removal (a client
/// may subscribe to many names in one command; a list would make that quadratic). Holds
/// nothing until the first name: every connection has two, and most never subscribe.
#[derive(Debug, Default)]
pub struct NameSet(Option<Box<Names>>);

#[derive(Debug, Default)]
struct Names {
    /// In subscription order; removed names leave a hole until the next compaction.
    order: Vec<Option<Bytes>>,
    index: HashMap<Bytes, usize>,
}

impl NameSet {
    /// Adds `name`; false if it was there.
    pub fn insert(&mut self, name: Bytes) -> bool {
        let n = self.0.get_or_insert_with(Default::default);
        if n.index.contains_key(&name) {
            return false;
        }
        n.index.insert(name.clone(), n.order.len());
        n.order.push(Some(name));
        true
    }

    /// Removes `name`; false if it was not there.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let Some(n) = self.0.as_deref_mut() else {
            return false;
        };
        let Some(i) = n.index.remove(name) else {
            return false;
        };
        n.order[i] = None;
        if n.index.is_empty() {
            self.0 = None;
            return true;
        }
        // Compact once holes outnumber names, so the list stays O(names).
        if n.order.len() > 2 * n.index.len() + 8 {
            n.order.retain(Option::is_some);
            for (i, name) in n.order.iter().enumerate() {
                if let Some(name) = name {
                    n.index.insert(name.clone(), i);
                }
            }
        }
        true
    }

    /// Whether `name` is in.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.0.as_ref().is_some_and(|n| n.index.contains_key(name))
    }

    /// Names in.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.index.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names in subscription order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.0.iter().flat_map(|n| n.order.iter().flatten())
    }
}

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
        s.local = Some(sh.local_events.subscribe());
    }
    let mut out = Vec::new();
    while let Ok(name) = p.next_bytes() {
        let list = if pattern {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        list.insert(name.clone());
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
        let list = if pattern { &s.patterns } else { &s.channels };
        names = list.iter().cloned().collect();
    }
    let mut out = Vec::new();
    for name in names {
        let list = if pattern {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        list.remove(&name);
        out.push(confirmation(kind, Some(name), s.subscription_count()));
    }
    if all && out.is_empty() {
        out.push(confirmation(kind, None, s.subscription_count()));
    }
    if !s.subscribed() {
        // No more events to receive: stop holding a slot in the broadcasts.
        s.events = None;
        s.local = None;
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
    frames(
        Bytes::from(e.kind.clone()),
        Bytes::from(e.payload.clone()),
        s,
    )
}

/// The frames one of this node's own events produces for this client.
pub fn deliver_local(ev: LocalEvent, s: &Session) -> Vec<Frame> {
    frames(
        Bytes::from_static(ev.kind.as_bytes()),
        Bytes::from_static(ev.payload.as_bytes()),
        s,
    )
}

/// A `message` if the client subscribed to `channel`, then a `pmessage` per matching pattern
/// (Redis's order).
fn frames(channel: Bytes, payload: Bytes, s: &Session) -> Vec<Frame> {
    let mut out = Vec::new();
    if s.channels.contains(&channel) {
        out.push(Frame::Push(vec![
            Frame::bulk_static("message"),
            Frame::Bulk(channel.clone()),
            Frame::Bulk(payload.clone()),
        ]));
    }
    for pat in s.patterns.iter() {
        if glob_match(pat, &channel) {
            out.push(Frame::Push(vec![
                Frame::bulk_static("pmessage"),
                Frame::Bulk(pat.clone()),
                Frame::Bulk(channel.clone()),
                Frame::Bulk(payload.clone()),
            ]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_set_keeps_order_and_removes_in_constant_time() {
        let mut set = NameSet::default();
        let n = 20_000;
        for i in 0..n {
            assert!(set.insert(Bytes::from(format!("ch{i}"))));
        }
        assert!(!set.insert(Bytes::from("ch7")));
        assert_eq!(set.len(), n);
        for i in (0..n).filter(|i| i % 3 != 0) {
            assert!(set.remove(format!("ch{i}").as_bytes()));
        }
        assert!(!set.remove(b"ch1"));
        assert!(set.contains(b"ch3") && !set.contains(b"ch4"));
        let left: Vec<&Bytes> = set.iter().collect();
        assert_eq!(left.len(), set.len());
        let expect: Vec<String> = (0..n)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("ch{i}"))
            .collect();
        assert!(left
            .iter()
            .zip(&expect)
            .all(|(a, b)| a.as_ref() == b.as_bytes()));
        // Holes were compacted away.
        assert!(set.0.as_ref().unwrap().order.len() <= 2 * set.len() + 8);
        // Emptied, it holds nothing again.
        for i in (0..n).filter(|i| i % 3 == 0) {
            assert!(set.remove(format!("ch{i}").as_bytes()));
        }
        assert!(set.0.is_none() && set.is_empty() && set.iter().next().is_none());
        assert!(!set.remove(b"ch0") && !set.contains(b"ch0"));
    }
}
