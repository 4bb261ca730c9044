//! TLS for the admin listener: given PEM files, or a self-signed certificate
//! generated at first start and kept in `<data-dir>/tls/`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Config, Tls};
use crate::crypto::write_private_file;

/// Paths of the certificate and key to serve, or None for plain HTTP.
pub fn ensure_certificate(config: &Config) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    match &config.tls {
        Tls::Off => Ok(None),
        Tls::Files { cert, key } => {
            for p in [cert, key] {
                std::fs::metadata(p).with_context(|| format!("Cannot read {}", p.display()))?;
            }
            Ok(Some((cert.clone(), key.clone())))
        }
        Tls::SelfSigned => self_signed(&config.data_dir.join("tls")).map(Some),
    }
}

fn self_signed(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    let cert = rcgen::generate_simple_self_signed(names)
        .context("Failed to generate a self-signed certificate")?;
    write_private_file(&key_path, cert.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.cert.pem())
        .with_context(|| format!("Failed to write {}", cert_path.display()))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for the admin listener");
    Ok((cert_path, key_path))
}
