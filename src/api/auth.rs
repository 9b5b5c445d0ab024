//! Authentication of the gRPC API: a wrapper around the Coordinator service that checks the
//! `authorization` metadata before any handler runs.
//!
//! Accepted forms: `authorization: Bearer <password>` and `authorization: Basic
//! base64(<user>:<password>)`, where the only user is `default` (as on the Sentinel port).
//! Every method needs the credential, except the read-only ones when `api_open_reads` is set;
//! a method not listed in [`READ_ONLY_METHODS`] is never opened, so a new RPC is protected
//! unless someone decides otherwise. Failures are `UNAUTHENTICATED` with no detail.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use ring::hmac;
use subtle::ConstantTimeEq;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::Status;
use tracing::warn;

/// Methods of `raftsentinel.v1.Coordinator` that change nothing; `api_open_reads` may open
/// these and only these.
pub const READ_ONLY_METHODS: [&str; 5] = [
    "ClusterStatus",
    "ListMasters",
    "GetMaster",
    "GetMasterDetail",
    "WatchMasters",
];

/// The only user name the API knows (Redis's default user).
pub const DEFAULT_USER: &str = "default";

/// What the API requires of a caller.
pub struct ApiAuth {
    /// Per-process random key: both the expected and the presented password are reduced to
    /// an HMAC under it, so the comparison is constant time and independent of length.
    key: hmac::Key,
    expected: Option<hmac::Tag>,
    open_reads: bool,
}

impl ApiAuth {
    /// Requires `password` (None: no credential, every call is let through: the API is then
    /// protected by mutual TLS or reachable only on loopback, see `Config::exposed`).
    pub fn new(password: Option<&str>, open_reads: bool) -> Self {
        let seed: [u8; 32] = rand::random();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &seed);
        let expected = password.map(|p| hmac::sign(&key, p.as_bytes()));
        ApiAuth {
            key,
            expected,
            open_reads,
        }
    }

    /// Whether a call of `method` with these headers may proceed.
    pub fn allows(&self, method: &str, headers: &http::HeaderMap) -> bool {
        let Some(expected) = &self.expected else {
            return true;
        };
        if self.open_reads && READ_ONLY_METHODS.contains(&method) {
            return true;
        }
        let Some((user, pass)) = presented(headers) else {
            return false;
        };
        let got = hmac::sign(&self.key, &pass);
        let pass_ok: bool = got.as_ref().ct_eq(expected.as_ref()).into();
        pass_ok && user == DEFAULT_USER.as_bytes()
    }
}

/// (user, password) from the `authorization` header.
fn presented(headers: &http::HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let v = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some((DEFAULT_USER.as_bytes().to_vec(), rest.to_vec()));
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = raw.iter().position(|b| *b == b':')?;
        return Some((raw[..colon].to_vec(), raw[colon + 1..].to_vec()));
    }
    None
}

/// `inner` (a generated gRPC server) behind [`ApiAuth`].
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<ApiAuth>,
}

impl<S> Authenticated<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, auth: Arc<ApiAuth>) -> Self {
        Authenticated { inner, auth }
    }
}

impl<S: Clone> Clone for Authenticated<S> {
    fn clone(&self) -> Self {
        Authenticated {
            inner: self.inner.clone(),
            auth: self.auth.clone(),
        }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        if self.auth.allows(method, req.headers()) {
            return Box::pin(self.inner.call(req));
        }
        let remote = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr())
            .map(|a| a.to_string())
            .unwrap_or_default();
        warn!(%remote, method, "gRPC call refused: missing or wrong credentials");
        let resp = Status::unauthenticated("unauthenticated").into_http();
        Box::pin(async move { Ok(resp) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn credentials_are_checked() {
        let a = ApiAuth::new(Some("s3cret"), false);
        let none = http::HeaderMap::new();
        for m in ["Failover", "GetMaster", "Unknown"] {
            assert!(!a.allows(m, &none), "{m} without credentials");
            assert!(a.allows(m, &headers("Bearer s3cret")), "{m}");
            assert!(a.allows(m, &headers("bearer  s3cret ")), "{m}");
            assert!(a.allows(m, &headers(&basic("default", "s3cret"))), "{m}");
            assert!(!a.allows(m, &headers("Bearer s3cre")), "{m} prefix");
            assert!(!a.allows(m, &headers("Bearer s3cret2")), "{m} longer");
            assert!(
                !a.allows(m, &headers(&basic("admin", "s3cret"))),
                "{m} user"
            );
            assert!(!a.allows(m, &headers("Token s3cret")), "{m} scheme");
            assert!(!a.allows(m, &headers("Basic !!!")), "{m} bad base64");
        }
    }

    #[test]
    fn open_reads_open_only_the_read_only_methods() {
        let a = ApiAuth::new(Some("s3cret"), true);
        let none = http::HeaderMap::new();
        for m in READ_ONLY_METHODS {
            assert!(a.allows(m, &none), "{m}");
        }
        for m in ["Failover", "Monitor", "AddNode", "getmaster", ""] {
            assert!(!a.allows(m, &none), "{m}");
        }
        let open = ApiAuth::new(None, false);
        assert!(open.allows("Failover", &none));
    }
}
