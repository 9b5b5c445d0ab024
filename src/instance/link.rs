//! One connection to one Redis instance, with AUTH/ACL user and a timeout on every call.
//! The probe keeps one open per instance; the failover executor opens short-lived ones.
//! Connections are opened through a [`Connector`], which carries the node's TLS material.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, Value};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tracing::Instrument;

use crate::fsm::MasterState;
use crate::model::Addr;
use crate::stream::MaybeTls;

/// Credentials and transport for the instances of one master.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// ACL user (None: the default user).
    pub user: Option<String>,
    /// Password.
    pub pass: Option<String>,
    /// Connect with TLS (the [`Connector`] holds the CA and client certificate).
    pub tls: bool,
}

impl Auth {
    /// The credentials configured for a master (they apply to its replicas too).
    pub fn of(m: &MasterState) -> Auth {
        Auth {
            user: m.auth_user.clone(),
            pass: m.auth_pass.clone(),
            tls: m.tls,
        }
    }
}

/// What went wrong talking to an instance. Every variant names the instance.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// TCP connect or the AUTH handshake failed (refused, wrong password, ...).
    #[error("cannot connect to {addr}: {detail}")]
    Connect {
        /// Instance.
        addr: Addr,
        /// Cause, as Redis or the OS said it.
        detail: String,
    },
    /// No reply in time.
    #[error("{addr} did not answer {what} within {after:?}")]
    Timeout {
        /// Instance.
        addr: Addr,
        /// Command.
        what: String,
        /// Limit.
        after: Duration,
    },
    /// The connection broke, or the peer does not speak RESP.
    #[error("connection to {addr} failed during {what}: {detail}")]
    Broken {
        /// Instance.
        addr: Addr,
        /// Command.
        what: String,
        /// Cause.
        detail: String,
    },
    /// Redis answered with an error reply.
    #[error("{addr} replied to {what}: {message}")]
    Server {
        /// Instance.
        addr: Addr,
        /// Command.
        what: String,
        /// The error line, e.g. `NOAUTH Authentication required.`
        message: String,
    },
    /// The reply was well-formed RESP but not what the command returns.
    #[error("{addr} sent an unexpected reply to {what}: {detail}")]
    Unexpected {
        /// Instance.
        addr: Addr,
        /// Command.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

impl LinkError {
    /// True when the connection is unusable and must be reopened.
    pub fn is_broken(&self) -> bool {
        matches!(self, LinkError::Broken { .. } | LinkError::Connect { .. })
    }
}

/// An error reply as Redis printed it: `CODE detail`.
pub fn server_error_line(e: &redis::ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
    }
}

/// TLS material for connections to Redis (masters with `tls = true`), from the node's
/// `security.redis_tls`.
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    /// CA certificate(s) (PEM) the servers' certificates must chain to; None: system roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key (PEM) for servers that require client certificates.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Opens [`Link`]s. Built once per node from its configuration and handed to every task
/// that talks to Redis (probes, holds, the ACL check, the failover executor), so two nodes
/// in one process (tests, the demo) each use their own TLS settings. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Connector {
    /// None: TLS connections verify against the system roots and offer no client certificate.
    tls: Option<Arc<RedisTls>>,
    /// The TLS client configuration, built from `tls` on first use.
    tls_connector: Arc<TlsCache>,
}

/// A TLS client configuration built once (or why it cannot be).
#[derive(Default)]
struct TlsCache(OnceLock<Result<tokio_rustls::TlsConnector, String>>);

impl std::fmt::Debug for TlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "TlsCache(built)"
        } else {
            "TlsCache(not built)"
        })
    }
}

impl Connector {
    /// A connector using `tls` for masters configured with `tls = true`.
    pub fn new(tls: Option<RedisTls>) -> Connector {
        Connector {
            tls: tls.map(Arc::new),
            tls_connector: Arc::default(),
        }
    }

    /// The TLS client configuration (the system's roots when no CA is configured).
    fn tls_connector(&self) -> Result<tokio_rustls::TlsConnector, String> {
        self.tls_connector
            .0
            .get_or_init(|| {
                build_tls_connector(self.tls.as_deref().unwrap_or(&RedisTls::default()))
            })
            .clone()
    }

    /// Connects to `addr` and authenticates within `timeout` (see [`Link::connect`]).
    pub async fn connect(
        &self,
        addr: &Addr,
        auth: &Auth,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        Link::connect(self, addr, auth, timeout).await
    }
}

/// An open connection. Its reader runs all the time, so a connection the instance closed
/// (killed, restarted, `CLIENT KILL`) is known at once, not at the next command.
pub struct Link {
    addr: Addr,
    conn: MultiplexedConnection,
    /// Resolves (with an error) when the connection's reader has stopped.
    closed: tokio::sync::oneshot::Receiver<()>,
    gone: bool,
    reader: tokio::task::AbortHandle,
}

impl Drop for Link {
    fn drop(&mut self) {
        // A reader still waiting for replies from a hung instance would hold its socket.
        self.reader.abort();
    }
}

impl Link {
    /// Connects and authenticates within `timeout`, with `connector`'s TLS material.
    pub async fn connect(
        connector: &Connector,
        addr: &Addr,
        auth: &Auth,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let fail = |detail: String| LinkError::Connect {
            addr: addr.clone(),
            detail,
        };
        let mut redis_info = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(u) = &auth.user {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = &auth.pass {
            redis_info = redis_info.set_password(p);
        }
        let cfg = AsyncConnectionConfig::new().set_response_timeout(Some(timeout));
        // One limit for DNS, TCP, TLS and the AUTH handshake together.
        let (conn, driver) = tokio::time::timeout(timeout, async {
            let stream = open_stream(connector, addr, auth.tls)
                .await
                .map_err(&fail)?;
            MultiplexedConnection::new_with_config(&redis_info, stream, cfg)
                .await
                .map_err(|e| fail(describe(&e)))
        })
        .await
        .map_err(|_| fail(format!("timed out after {timeout:?}")))??;
        // The connection's reader and writer, spawned here rather than by the crate so that
        // its end (EOF or reset while idle) is seen by [`Link::closed`].
        let (tx, closed) = tokio::sync::oneshot::channel::<()>();
        let span = tracing::debug_span!("redis_conn", addr = %addr);
        let reader = tokio::spawn(
            async move {
                driver.await;
                drop(tx);
            }
            .instrument(span),
        )
        .abort_handle();
        Ok(Link {
            addr: addr.clone(),
            conn,
            closed,
            gone: false,
            reader,
        })
    }

    /// Resolves once the connection is closed (by the instance, a reset, or a failed
    /// command); stays pending while it is open. Cancel-safe.
    pub async fn closed(&mut self) {
        if !self.gone {
            let _ = (&mut self.closed).await;
            self.gone = true;
        }
    }

    /// The instance.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// Sends one command; an error reply comes back as `Ok(Value::ServerError)` so callers
    /// can accept some (`-LOADING` to PING).
    pub async fn raw(
        &mut self,
        cmd: &Cmd,
        what: &str,
        timeout: Duration,
    ) -> Result<Value, LinkError> {
        match tokio::time::timeout(timeout, self.conn.send_packed_command(cmd)).await {
            Err(_) => Err(self.timeout(what, timeout)),
            Ok(Err(e)) => Err(self.classify(what, timeout, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Sends one command; an error reply is a [`LinkError::Server`].
    pub async fn query(
        &mut self,
        cmd: &Cmd,
        what: &str,
        timeout: Duration,
    ) -> Result<Value, LinkError> {
        match self.raw(cmd, what, timeout).await? {
            Value::ServerError(e) => Err(LinkError::Server {
                addr: self.addr.clone(),
                what: what.to_string(),
                message: server_error_line(&e),
            }),
            v => Ok(v),
        }
    }

    /// Sends a pipeline and returns every reply as is (error replies included).
    pub async fn pipeline(
        &mut self,
        p: &Pipeline,
        count: usize,
        what: &str,
        timeout: Duration,
    ) -> Result<Vec<Value>, LinkError> {
        match tokio::time::timeout(timeout, self.conn.send_packed_commands(p, 0, count)).await {
            Err(_) => Err(self.timeout(what, timeout)),
            Ok(Err(e)) => Err(self.classify(what, timeout, e)),
            Ok(Ok(v)) if v.len() == count => Ok(v),
            Ok(Ok(v)) => Err(LinkError::Unexpected {
                addr: self.addr.clone(),
                what: what.to_string(),
                detail: format!("{} replies to {count} commands", v.len()),
            }),
        }
    }

    /// Sends a command and expects a text reply (bulk or simple string).
    pub async fn text(
        &mut self,
        cmd: &Cmd,
        what: &str,
        timeout: Duration,
    ) -> Result<String, LinkError> {
        let v = self.query(cmd, what, timeout).await?;
        super::info::value_text(&v).ok_or_else(|| LinkError::Unexpected {
            addr: self.addr.clone(),
            what: what.to_string(),
            detail: format!("expected text, got {}", short(&v)),
        })
    }

    fn timeout(&self, what: &str, after: Duration) -> LinkError {
        LinkError::Timeout {
            addr: self.addr.clone(),
            what: what.to_string(),
            after,
        }
    }

    fn classify(&self, what: &str, after: Duration, e: redis::RedisError) -> LinkError {
        if e.is_timeout() {
            return self.timeout(what, after);
        }
        LinkError::Broken {
            addr: self.addr.clone(),
            what: what.to_string(),
            detail: describe(&e),
        }
    }
}

/// Plain TCP or TLS, whichever the instance speaks.
type Stream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// TCP to the instance (every address its name resolves to, in turn), then TLS if asked.
async fn open_stream(connector: &Connector, addr: &Addr, tls: bool) -> Result<Stream, String> {
    let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| e.to_string())?;
    // Requests are small and each waits for its reply: no Nagle delay.
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    if !tls {
        return Ok(Stream::Plain(tcp));
    }
    let tls_connector = connector.tls_connector()?;
    // Certificates are always verified, host names (or IP addresses) included.
    let name = rustls::pki_types::ServerName::try_from(addr.host.clone())
        .map_err(|e| format!("not a TLS server name: {e}"))?;
    let s = tls_connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(Stream::Tls(Box::new(s)))
}

/// A TLS client configuration from the node's material.
fn build_tls_connector(t: &RedisTls) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca {
        Some(ca) => {
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| format!("Redis TLS CA: {e}"))?;
                roots.add(c).map_err(|e| format!("Redis TLS CA: {e}"))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            if native.certs.is_empty() {
                if let Some(e) = native.errors.first() {
                    return Err(format!("system CA certificates: {e}"));
                }
            }
            for c in native.certs {
                // One unusable system certificate does not make the others useless.
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &t.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("Redis TLS client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("Redis TLS client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("Redis TLS client certificate: {e}"))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A redis-rs error as one readable line (its parse errors span several).
fn describe(e: &redis::RedisError) -> String {
    let s = e.to_string();
    let s = if s.is_empty() { format!("{e:?}") } else { s };
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A short rendering of a value for error messages.
pub fn short(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}
