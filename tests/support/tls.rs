//! Test certificates made in-process: a CA and certificates it signs, with the IP and DNS
//! names loopback tests connect to. ECDSA P-256 with SHA-256, which both rustls and
//! redis-server's OpenSSL accept; keys are written as PKCS#8 PEM.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

/// A CA plus one certificate and key it signed.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// CA certificate.
    pub ca: PathBuf,
    /// Leaf certificate.
    pub cert: PathBuf,
    /// Leaf private key.
    pub key: PathBuf,
    /// CA private key (to sign more leaves).
    pub ca_key: PathBuf,
    /// The name the CA was made with (its subject, to sign more leaves).
    pub ca_name: String,
}

/// Valid from an hour ago (a little clock skew) for three days, like a short-lived test PKI.
fn validity(p: &mut CertificateParams) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + now - Duration::from_secs(3600);
    p.not_after = epoch + now + Duration::from_secs(3 * 24 * 3600);
}

/// The CA's parameters: rebuilt from its name to sign more leaves, since an issuer is its
/// subject plus its key.
fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p);
    p
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key")
}

/// A new CA named `name` in `dir` with one leaf for 127.0.0.1/localhost (server and client use).
pub fn make_pki(dir: &Path, name: &str) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let key = new_key();
    let cert = ca_params(name).self_signed(&key).expect("self-sign the CA");
    let files = TlsFiles {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        ca_key: dir.join(format!("{name}-ca.key")),
        ca_name: name.to_string(),
    };
    std::fs::write(&files.ca, cert.pem()).unwrap();
    std::fs::write(&files.ca_key, key.serialize_pem()).unwrap();
    let (cert, key) = sign_leaf(&files, dir, &format!("{name}-leaf"));
    TlsFiles { cert, key, ..files }
}

/// Another leaf signed by the same CA: `{name}.pem` and `{name}.key` in `dir`.
pub fn sign_leaf(ca: &TlsFiles, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(&ca.ca_key).unwrap()).expect("read the CA key");
    let issuer = Issuer::new(ca_params(&ca.ca_name), ca_key);
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.subject_alt_names = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().unwrap()),
    ];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p);
    let key = new_key();
    let cert = p.signed_by(&key, &issuer).expect("sign the leaf");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}
