//! Peer-port authentication with the shared cluster secret: every Raft batch carries an
//! HMAC-SHA256 of its contents, which the receiver checks before looking at any message.
//!
//! The MAC authenticates; it does not encrypt. A replayed batch is no worse than a network
//! that duplicates messages, which Raft tolerates by design. TLS adds confidentiality.

use ring::hmac;
use subtle::ConstantTimeEq;

use crate::pb::peer::RaftBatch;

/// Domain separation: a MAC made for anything else never verifies as a batch MAC.
const CONTEXT: &[u8] = b"raft-sentinel peer batch v1\0";

/// The cluster secret as an HMAC key.
pub struct ClusterKey(hmac::Key);

impl ClusterKey {
    /// A key from the secret's bytes.
    pub fn new(secret: &[u8]) -> Self {
        ClusterKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The MAC of every field of `batch` but `mac`.
    pub fn sign(&self, batch: &RaftBatch) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(CONTEXT);
        // Length prefixes keep field boundaries unambiguous.
        ctx.update(&(batch.cluster_id.len() as u64).to_be_bytes());
        ctx.update(batch.cluster_id.as_bytes());
        ctx.update(&batch.from.to_be_bytes());
        ctx.update(&batch.to.to_be_bytes());
        ctx.update(&(batch.msgs.len() as u64).to_be_bytes());
        for m in &batch.msgs {
            ctx.update(&(m.len() as u64).to_be_bytes());
            ctx.update(m);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `batch.mac` is the MAC of the batch (constant time).
    pub fn verify(&self, batch: &RaftBatch) -> bool {
        let want = self.sign(batch);
        batch.mac.len() == want.len() && bool::from(want.ct_eq(&batch.mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> RaftBatch {
        RaftBatch {
            cluster_id: "c".into(),
            from: 1,
            to: 2,
            msgs: vec![b"ab".to_vec(), b"c".to_vec()],
            mac: Vec::new(),
        }
    }

    #[test]
    fn only_the_right_secret_over_the_same_batch_verifies() {
        let k = ClusterKey::new(b"0123456789abcdef");
        let mut b = batch();
        assert!(!k.verify(&b), "no MAC");
        b.mac = k.sign(&b);
        assert!(k.verify(&b));
        assert!(
            !ClusterKey::new(b"0123456789abcdeX").verify(&b),
            "other secret"
        );
        let mut changed = b.clone();
        changed.from = 3;
        assert!(!k.verify(&changed), "sender changed");
        let mut split = b.clone();
        split.msgs = vec![b"a".to_vec(), b"bc".to_vec()];
        assert!(!k.verify(&split), "message boundaries changed");
        let mut short = b.clone();
        short.mac.truncate(16);
        assert!(!k.verify(&short), "truncated MAC");
    }
}
