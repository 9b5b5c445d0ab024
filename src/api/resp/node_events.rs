//! Events this node publishes of its own state rather than from the log: `+tilt` and
//! `-tilt`, read from its monitor view. TILT is this process's own condition (a stall or a
//! clock jump of this node), so, as a Sentinel does, the node publishes it only on its own
//! port; it is never proposed. Sentinel sends them with no instance details (payloads
//! `#tilt mode entered` / `#tilt mode exited`) and runs no notification script for them: the
//! script is configured per master, and TILT belongs to no master.

use tokio::sync::{broadcast, watch};
use tracing::debug;

use crate::shutdown::Shutdown;
use crate::view::TiltView;

/// Events buffered for each subscriber. They are rare (one per stall), so a subscriber this
/// far behind is stuck, and is dropped like one behind the applied events.
pub const CAPACITY: usize = 16;

/// One event of this node's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEvent {
    /// Channel.
    pub kind: &'static str,
    /// Payload, in Sentinel's format.
    pub payload: &'static str,
}

/// This node entered (or, stalling again, re-entered) TILT.
pub const TILT_ENTERED: LocalEvent = LocalEvent {
    kind: "+tilt",
    payload: "#tilt mode entered",
};

/// This node's TILT period is over.
pub const TILT_EXITED: LocalEvent = LocalEvent {
    kind: "-tilt",
    payload: "#tilt mode exited",
};

/// `+tilt` published at most for one change of the view: more stalls than this between two
/// looks at the view (each takes over a second) would mean this task itself did not run.
const MAX_ENTERED_AT_ONCE: u64 = 8;

/// The events between two looks at the view, in order. A watch shows only its newest value,
/// so a change may cover several: a TILT that ended and a new one (a new start), or a stall
/// that entered and left TILT in between (counted, and over).
fn transitions(prev: TiltView, now: TiltView) -> Vec<LocalEvent> {
    let mut out = Vec::new();
    let new = now.entered.saturating_sub(prev.entered);
    // A new start means the TILT seen before ended first. (Seen ended, it may have been
    // re-armed or ended and begun again: the fewer events are told.)
    if prev.since.is_some() && new > 0 && now.since.is_some() && now.since != prev.since {
        out.push(TILT_EXITED);
    }
    let entered = new.min(MAX_ENTERED_AT_ONCE) as usize;
    out.extend(std::iter::repeat_n(TILT_ENTERED, entered));
    if now.since.is_none() && (prev.since.is_some() || new > 0) {
        out.push(TILT_EXITED);
    }
    out
}

/// Publishes this node's TILT changes to `tx` until shutdown (or until the monitor is gone).
/// A TILT under way when this starts is taken as known: its end is still published. It
/// watches the TILT state alone, not the whole view, so it wakes once per stall.
pub async fn publish(
    mut view: watch::Receiver<TiltView>,
    tx: broadcast::Sender<LocalEvent>,
    mut shutdown: Shutdown,
) {
    let mut last = *view.borrow_and_update();
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
        let now = *view.borrow_and_update();
        if now == last {
            continue;
        }
        for ev in transitions(last, now) {
            debug!(channel = ev.kind, "publishing");
            // An error only says that no one is subscribed.
            let _ = tx.send(ev);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn st(since: Option<Instant>, entered: u64) -> TiltView {
        TiltView { since, entered }
    }

    #[test]
    fn each_change_of_tilt_is_one_event_in_order() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let (on, off) = (TILT_ENTERED, TILT_EXITED);
        // Nothing changed (a probe updated the view).
        assert_eq!(transitions(st(None, 0), st(None, 0)), vec![]);
        assert_eq!(transitions(st(Some(t0), 1), st(Some(t0), 1)), vec![]);
        // Entered, re-armed by a second stall (Sentinel publishes it again), left.
        assert_eq!(transitions(st(None, 0), st(Some(t0), 1)), vec![on]);
        assert_eq!(transitions(st(Some(t0), 1), st(Some(t0), 2)), vec![on]);
        assert_eq!(transitions(st(Some(t0), 2), st(None, 2)), vec![off]);
        // Several changes seen at once: over and a new one begun; in and out in between.
        assert_eq!(transitions(st(Some(t0), 1), st(Some(t1), 2)), vec![off, on]);
        assert_eq!(transitions(st(None, 1), st(None, 2)), vec![on, off]);
        assert_eq!(
            transitions(st(Some(t0), 1), st(None, 2)),
            vec![on, off],
            "a re-arm, then the end"
        );
        // Bounded, whatever the count says.
        assert_eq!(transitions(st(None, 0), st(Some(t0), 1000)).len(), 8);
    }
}
