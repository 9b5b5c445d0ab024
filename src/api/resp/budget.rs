//! The global budget for bytes buffered by all connections of the port (input and output).
//!
//! Each connection charges its buffers' capacity after every read and write. While the
//! total is over the budget, new connections are refused with an error; the connection that
//! pushes it over closes the connections holding the largest buffers first until the total
//! is back under three quarters of the budget, so one flood cannot push the node into its
//! memory limit and well-behaved clients with small buffers keep their connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::warn;

use super::clients::{ClientHandle, Registry};

/// Bytes buffered by all connections, against a limit.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Connections closed to get back under the budget.
    pub evicted: AtomicUsize,
    evicting: AtomicBool,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            evicted: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
        }
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the total is over the limit.
    pub fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Closes the clients with the largest buffers until the total is under 3/4 of the
    /// limit. One connection evicts at a time; the others carry on.
    pub fn evict(&self, registry: &Registry) {
        if self.evicting.swap(true, Ordering::Acquire) {
            return;
        }
        let mut clients: Vec<(usize, Arc<ClientHandle>)> = registry
            .all()
            .into_iter()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .map(|c| (c.buffered.load(Ordering::Relaxed), c))
            .filter(|(b, _)| *b > 0)
            .collect();
        clients.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let target = self.limit / 4 * 3;
        let mut left = self.used();
        let mut closed = 0usize;
        for (bytes, c) in clients {
            if left <= target {
                break;
            }
            c.evicted.store(true, Ordering::Relaxed);
            c.kill.fire();
            left = left.saturating_sub(bytes);
            closed += 1;
        }
        if closed > 0 {
            self.evicted.fetch_add(closed, Ordering::Relaxed);
            warn!(
                closed,
                used = self.used(),
                limit = self.limit,
                "client buffers over budget: closed the connections holding the largest"
            );
        }
        self.evicting.store(false, Ordering::Release);
    }
}

/// One connection's share of the budget; returned when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    client: Arc<ClientHandle>,
    held: usize,
}

impl Charge {
    /// A connection's empty share.
    pub fn new(budget: Arc<Budget>, client: Arc<ClientHandle>) -> Charge {
        Charge {
            budget,
            client,
            held: 0,
        }
    }

    /// Records that the connection now holds `bytes`; true if the budget is now over.
    pub fn set(&mut self, bytes: usize) -> bool {
        if bytes != self.held {
            if bytes > self.held {
                self.budget
                    .used
                    .fetch_add(bytes - self.held, Ordering::Relaxed);
            } else {
                self.budget
                    .used
                    .fetch_sub(self.held - bytes, Ordering::Relaxed);
            }
            self.held = bytes;
            self.client.buffered.store(bytes, Ordering::Relaxed);
        }
        bytes > 0 && self.budget.over()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_buffers_are_closed_first_until_under_three_quarters() {
        let r = Registry::default();
        let b = Arc::new(Budget::new(1000));
        let a: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let sizes = [100, 500, 50, 400, 200];
        let mut charges: Vec<Charge> = sizes
            .iter()
            .map(|_| Charge::new(b.clone(), r.add(a, a, -1)))
            .collect();
        let mut over = false;
        for (c, &s) in charges.iter_mut().zip(&sizes) {
            over = c.set(s);
        }
        assert!(over && b.over());
        assert_eq!(b.used(), 1250);
        b.evict(&r);
        let evicted: Vec<usize> = r
            .all()
            .iter()
            .filter(|c| c.evicted.load(Ordering::Relaxed))
            .map(|c| c.buffered.load(Ordering::Relaxed))
            .collect();
        // 1250 - 500 = 750 <= 750: only the largest goes.
        assert_eq!(evicted, vec![500]);
        drop(charges.remove(1));
        assert_eq!(b.used(), 750);
        assert!(!b.over());
        drop(charges);
        assert_eq!(b.used(), 0);
    }
}
