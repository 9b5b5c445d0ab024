//! One connection to one Redis instance, with AUTH/ACL user and a timeout on every call.
//! The probe keeps one open per instance; the failover executor opens short-lived ones.
//! Connections are opened through a [`Connector`], which carries the node's TLS material.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, Value,
};

use crate::fsm::MasterState;
use crate::model::Addr;

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
}

impl Connector {
    /// A connector using `tls` for masters configured with `tls = true`.
    pub fn new(tls: Option<RedisTls>) -> Connector {
        Connector {
            tls: tls.map(Arc::new),
        }
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

/// An open connection.
pub struct Link {
    addr: Addr,
    conn: MultiplexedConnection,
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
        let conn_addr = if auth.tls {
            ConnectionAddr::TcpTls {
                host: addr.host.clone(),
                port: addr.port,
                // Certificates are always verified, host names included.
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(addr.host.clone(), addr.port)
        };
        let info = conn_addr
            .into_connection_info()
            .map_err(|e| fail(e.to_string()))?
            .set_redis_settings(redis_info);
        let client = match (auth.tls, connector.tls.as_deref()) {
            (true, Some(t)) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: t.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: t.ca.clone(),
                },
            ),
            _ => Client::open(info),
        }
        .map_err(|e| fail(e.to_string()))?;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        // The outer timeout also bounds DNS and anything the crate does not time itself.
        let conn = tokio::time::timeout(
            timeout + Duration::from_millis(50),
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        .map_err(|_| fail(format!("timed out after {timeout:?}")))?
        .map_err(|e| fail(describe(&e)))?;
        Ok(Link {
            addr: addr.clone(),
            conn,
        })
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
