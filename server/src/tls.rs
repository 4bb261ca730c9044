//! TLS for the admin listener: given PEM files, or a self-signed certificate
//! generated at first start and kept in `<data-dir>/tls/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::proxy::certs::CertStore;

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

/// The admin listener's TLS: with `prefer_issued`, a certificate berth holds
/// for the requested name (the panel domain's, from ACME) wins over the
/// self-signed one; certificate files given by the admin are always used.
pub fn panel_config(
    cert: &Path,
    key: &Path,
    prefer_issued: bool,
    store: Arc<CertStore>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let fallback = crate::proxy::certs::load_pair(cert, key)
        .with_context(|| format!("Failed to load TLS certificate {}", cert.display()))?
        .key;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(PanelCerts {
            store: prefer_issued.then_some(store),
            fallback,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PanelCerts {
    store: Option<Arc<CertStore>>,
    fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for PanelCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let issued = match (&self.store, hello.server_name()) {
            (Some(store), Some(name)) => store.find(&name.to_ascii_lowercase()).map(|c| c.key),
            _ => None,
        };
        Some(issued.unwrap_or_else(|| self.fallback.clone()))
    }
}
