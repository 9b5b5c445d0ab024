//! A client connection's byte stream: plain TCP, or TLS when the Sentinel port is configured
//! with a certificate.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use crate::stream::MaybeTls;

/// A client connection: plain, or TLS when the port has a certificate.
pub type ClientStream = MaybeTls<TlsStream<TcpStream>>;

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaybeTls::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            MaybeTls::Tls(s) => f.debug_tuple("Tls").field(s.get_ref().0).finish(),
        }
    }
}

/// Why a TLS configuration for the Sentinel port could not be built.
#[derive(Debug, thiserror::Error)]
#[error("sentinel port TLS: {0}")]
pub struct TlsConfigError(String);

/// Builds the acceptor from PEM: the server's certificate chain and key, and optionally a CA
/// whose certificate every client must then present.
pub fn acceptor(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<tokio_rustls::TlsAcceptor, TlsConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |e: &dyn std::fmt::Display| TlsConfigError(e.to_string());
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| err(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| err(&e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
