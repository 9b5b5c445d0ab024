//! Peer-port authentication with the shared cluster secret: every Raft batch carries an
//! HMAC-SHA256 of its contents, which the receiver checks before looking at any message; the
//! bootstrap `Hello` exchange is signed both ways (the reply over the request's nonce).
//!
//! The MAC authenticates; it does not encrypt. A replayed batch is no worse than a network
//! that duplicates messages, which Raft tolerates by design. TLS adds confidentiality.

use ring::hmac;
use subtle::ConstantTimeEq;

use crate::pb::peer::{HelloReply, HelloRequest, RaftBatch};

/// Domain separation: a MAC made for one kind of message never verifies as another.
const CONTEXT: &[u8] = b"raft-sentinel peer batch v1\0";
const HELLO: &[u8] = b"raft-sentinel peer hello v1\0";
const HELLO_REPLY: &[u8] = b"raft-sentinel peer hello reply v1\0";

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
        same(&self.sign(batch), &batch.mac)
    }

    fn fields(&self, domain: &[u8], fields: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(domain);
        for f in fields {
            ctx.update(&(f.len() as u64).to_be_bytes());
            ctx.update(f);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// The MAC of a `Hello` request.
    pub fn sign_hello(&self, r: &HelloRequest) -> Vec<u8> {
        self.fields(
            HELLO,
            &[r.cluster_id.as_bytes(), &r.from.to_be_bytes(), &r.nonce],
        )
    }

    /// Whether the request's MAC is right.
    pub fn verify_hello(&self, r: &HelloRequest) -> bool {
        same(&self.sign_hello(r), &r.mac)
    }

    /// The MAC of a `Hello` reply to a request with `nonce`.
    pub fn sign_hello_reply(&self, nonce: &[u8], r: &HelloReply) -> Vec<u8> {
        let flags = [
            u8::from(r.initialized),
            u8::from(r.asker_is_member),
            u8::from(r.asker_has_run),
        ];
        self.fields(
            HELLO_REPLY,
            &[
                nonce,
                r.cluster_id.as_bytes(),
                &r.node_id.to_be_bytes(),
                &flags,
                &r.commit_index.to_be_bytes(),
                &r.term.to_be_bytes(),
            ],
        )
    }

    /// Whether a reply to a request with `nonce` carries the right MAC.
    pub fn verify_hello_reply(&self, nonce: &[u8], r: &HelloReply) -> bool {
        same(&self.sign_hello_reply(nonce, r), &r.mac)
    }
}

fn same(want: &[u8], got: &[u8]) -> bool {
    want.len() == got.len() && bool::from(want.ct_eq(got))
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

    #[test]
    fn hello_is_signed_both_ways_and_bound_to_the_nonce() {
        let k = ClusterKey::new(b"0123456789abcdef");
        let mut req = HelloRequest {
            cluster_id: "c".into(),
            from: 2,
            nonce: vec![7; 16],
            mac: Vec::new(),
        };
        assert!(!k.verify_hello(&req));
        req.mac = k.sign_hello(&req);
        assert!(k.verify_hello(&req));
        let mut rep = HelloReply {
            cluster_id: "c".into(),
            node_id: 1,
            initialized: true,
            ..Default::default()
        };
        rep.mac = k.sign_hello_reply(&req.nonce, &rep);
        assert!(k.verify_hello_reply(&req.nonce, &rep));
        assert!(
            !k.verify_hello_reply(&[8; 16], &rep),
            "replayed to another request"
        );
        rep.asker_has_run = true;
        assert!(!k.verify_hello_reply(&req.nonce, &rep), "altered reply");
    }
}
