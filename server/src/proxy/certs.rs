//! Certificates the HTTPS listener serves, chosen by SNI. The set is swapped
//! atomically; a name berth has no certificate for ends the handshake, so
//! one site's certificate is never shown for another's name.
//!
//! Certificates come from `DIR/certs/<host>/fullchain.pem` + `privkey.pem`
//! (certbot's layout, so an existing `live/` directory can be copied in) and,
//! through `CertStore::set_managed`, from berth's certificate store (ACME
//! and uploads), held in memory only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One loaded certificate and what the status page shows about it.
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Names the certificate covers (lowercase; `*.example.com` wildcards).
    pub names: Vec<String>,
    pub not_after: i64,
    pub source: String,
}

#[derive(Default)]
pub struct CertStore {
    /// Exact and wildcard names → certificate; the resolver reads this.
    by_name: ArcSwap<HashMap<String, Loaded>>,
    /// Files already parsed, by path and mtime, so a rescan is cheap.
    files: RwLock<HashMap<PathBuf, (SystemTime, Loaded)>>,
    /// Certificates from berth's own store.
    managed: RwLock<Vec<Loaded>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("names", &self.by_name.load().len())
            .finish()
    }
}

impl CertStore {
    /// The certificate for `host`: an exact name first, then a wildcard for
    /// its parent.
    pub fn find(&self, host: &str) -> Option<Loaded> {
        let map = self.by_name.load();
        if let Some(c) = map.get(host) {
            return Some(c.clone());
        }
        let (_, parent) = host.split_once('.')?;
        map.get(&format!("*.{parent}")).cloned()
    }

    /// Replaces the certificates from berth's store; live at the next
    /// `rescan`.
    pub fn set_managed(&self, managed: Vec<Loaded>) {
        *self.managed.write().unwrap_or_else(|p| p.into_inner()) = managed;
    }

    /// Every name served and its certificate.
    pub fn all(&self) -> Arc<HashMap<String, Loaded>> {
        self.by_name.load_full()
    }

    /// Re-reads the certificate directory (files whose mtime is unchanged are
    /// not parsed again) and swaps the new set in. Unreadable entries are
    /// reported and skipped; they never take the others down.
    pub fn rescan(&self, dir: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        let mut fresh: HashMap<PathBuf, (SystemTime, Loaded)> = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e.flatten().collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", dir.display()));
                Vec::new()
            }
        };
        let cached = self.files.read().unwrap_or_else(|p| p.into_inner()).clone();
        for entry in entries {
            let chain = entry.path().join("fullchain.pem");
            let key = entry.path().join("privkey.pem");
            let Ok(mtime) = std::fs::metadata(&chain)
                .and_then(|m| m.modified())
                .and_then(|c| Ok(c.max(std::fs::metadata(&key)?.modified()?)))
            else {
                continue;
            };
            if let Some((at, loaded)) = cached.get(&chain) {
                if *at == mtime {
                    fresh.insert(chain, (mtime, loaded.clone()));
                    continue;
                }
            }
            match load_pair(&chain, &key) {
                Ok(loaded) => {
                    fresh.insert(chain, (mtime, loaded));
                }
                Err(e) => problems.push(format!("{}: {e:#}", entry.path().display())),
            }
        }
        let mut by_name = HashMap::new();
        let managed = self
            .managed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let loaded_files = fresh.values().map(|(_, l)| l);
        for loaded in managed.iter().chain(loaded_files) {
            for name in &loaded.names {
                // Of two certificates for one name, the one valid longer wins.
                let better = by_name
                    .get(name)
                    .is_none_or(|c: &Loaded| c.not_after < loaded.not_after);
                if better {
                    by_name.insert(name.clone(), loaded.clone());
                }
            }
        }
        self.by_name.store(Arc::new(by_name));
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        problems
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        self.find(&name).map(|c| c.key)
    }
}

/// Parses a PEM chain and key, checks that they belong together, and reads
/// the names and expiry of the leaf.
pub fn load_pair(chain_path: &Path, key_path: &Path) -> anyhow::Result<Loaded> {
    use anyhow::Context;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain_path)
        .with_context(|| format!("cannot read {}", chain_path.display()))?
        .collect::<Result<_, _>>()
        .context("the certificate chain is not valid PEM")?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("cannot read a private key from {}", key_path.display()))?;
    let loaded = certified(chain, key)?;
    Ok(Loaded {
        source: chain_path.display().to_string(),
        ..loaded
    })
}

/// Builds what rustls serves from a DER chain and key.
pub fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Loaded> {
    use anyhow::Context;
    let leaf = chain.first().context("the chain holds no certificate")?;
    let (names, not_after) = leaf_facts(leaf)?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .context("unsupported private key type")?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match()
        .context("the private key does not match the certificate")?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
        not_after,
        source: String::new(),
    })
}

/// DNS names (SAN, else CN) and expiry (Unix seconds) of a certificate.
pub fn leaf_facts(der: &CertificateDer<'_>) -> anyhow::Result<(Vec<String>, i64)> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| anyhow::anyhow!("the certificate cannot be parsed: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, folder: &str, names: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let d = dir.join(folder);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("fullchain.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("privkey.pem"), key.serialize_pem()).unwrap();
    }

    #[test]
    fn finds_exact_and_wildcard_names_and_skips_broken_pairs() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        write_cert(dir.path(), "a", &["a.example.com"]);
        write_cert(dir.path(), "wild", &["*.example.org"]);
        std::fs::create_dir_all(dir.path().join("broken")).unwrap();
        std::fs::write(dir.path().join("broken/fullchain.pem"), "nope").unwrap();
        std::fs::write(dir.path().join("broken/privkey.pem"), "nope").unwrap();
        let store = CertStore::default();
        let problems = store.rescan(dir.path());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(store.find("a.example.com").is_some());
        assert!(store.find("x.example.org").is_some());
        assert!(store.find("example.org").is_none());
        assert!(store.find("b.example.com").is_none());
        assert!(store.find("deep.x.example.org").is_none());
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        write_cert(dir.path(), "a", &["a.example.com"]);
        write_cert(dir.path(), "b", &["b.example.com"]);
        std::fs::copy(
            dir.path().join("b/privkey.pem"),
            dir.path().join("a/privkey.pem"),
        )
        .unwrap();
        let err = load_pair(
            &dir.path().join("a/fullchain.pem"),
            &dir.path().join("a/privkey.pem"),
        )
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    }
}
