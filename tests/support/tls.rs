//! Test certificates made with the `openssl` command: a CA and certificates it signs, with
//! the IP and DNS names loopback tests connect to.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

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
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new CA named `name` in `dir` with one leaf for 127.0.0.1/localhost (server and client use).
pub fn make_pki(dir: &Path, name: &str) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let ca = format!("{name}-ca.pem");
    let ca_key = format!("{name}-ca.key");
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &ca_key,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "3",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    let files = TlsFiles {
        ca: dir.join(&ca),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        ca_key: dir.join(&ca_key),
    };
    let (cert, key) = sign_leaf(&files, dir, &format!("{name}-leaf"));
    TlsFiles { cert, key, ..files }
}

/// Another leaf signed by the same CA.
pub fn sign_leaf(ca: &TlsFiles, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.sec1"),
        ],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &format!("{name}.sec1"),
            "-out",
            &key,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca.ca.display().to_string(),
            "-CAkey",
            &ca.ca_key.display().to_string(),
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "3",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(cert), dir.join(key))
}
