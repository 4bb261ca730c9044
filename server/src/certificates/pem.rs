//! Reading certificates and keys as pasted or downloaded, and what berth
//! keeps about them. Everything is parsed and re-serialised from DER, so
//! what is stored is exactly what was checked (no stray text, no comments).

use anyhow::{bail, Context};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

/// What the API shows about a certificate, read from its leaf.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// DNS names (SAN, else CN), lowercase.
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// The issuer's common name (or the whole DN when it has none).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// ARI certificate identifier, when the leaf has an authority key id.
    pub ari_id: Option<String>,
}

pub fn parse_chain(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("not valid PEM: {e}"))?;
    if chain.is_empty() {
        bail!("no CERTIFICATE block found");
    }
    Ok(chain)
}

pub fn parse_key(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| anyhow::anyhow!("no private key (PKCS#8, PKCS#1 or SEC1 PEM) found"))
}

pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| encode("CERTIFICATE", c)).collect()
}

pub fn key_pem(key: &PrivateKeyDer<'_>) -> String {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    encode(label, key.secret_der())
}

pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

pub fn facts(leaf: &CertificateDer<'_>) -> anyhow::Result<Facts> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| anyhow::anyhow!("the certificate cannot be parsed: {e}"))?;
    let (names, not_after) = crate::proxy::certs::leaf_facts(leaf)?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_string))
        .unwrap_or_else(|| cert.issuer().to_string());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ari_id = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| {
                format!(
                    "{}.{}",
                    b64.encode(k.0),
                    b64.encode(cert.tbs_certificate.raw_serial())
                )
            }),
            _ => None,
        });
    Ok(Facts {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after,
        issuer,
        serial: hex::encode(cert.tbs_certificate.raw_serial()),
        fingerprint: fingerprint(leaf.as_ref()),
        ari_id,
    })
}

/// Whether a certificate name covers `host`: equal, or a wildcard one
/// level above it (`*.example.com` covers `a.example.com`, not
/// `example.com` nor `a.b.example.com`).
pub fn covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(parent), Some((_, host_parent))) => parent == host_parent,
        _ => false,
    }
}

/// A checked upload: the chain (leaf first) and key, re-serialised, and the
/// leaf's facts.
pub struct Checked {
    pub chain_pem: String,
    pub key_pem: String,
    pub facts: Facts,
}

/// Checks an uploaded certificate: it parses, the key matches the leaf, it
/// is not expired, and it covers every name in `required`. Errors name the
/// request field at fault.
pub fn check_upload(
    certificate_pem: &str,
    key_pem_text: &str,
    chain_pem_text: Option<&str>,
    required: &[String],
    now: i64,
) -> Result<Checked, (&'static str, String)> {
    let mut chain =
        parse_chain(certificate_pem).map_err(|e| ("certificate_pem", format!("{e:#}")))?;
    if let Some(extra) = chain_pem_text.filter(|c| !c.trim().is_empty()) {
        chain.extend(parse_chain(extra).map_err(|e| ("chain_pem", format!("{e:#}")))?);
    }
    let key = parse_key(key_pem_text).map_err(|e| ("key_pem", format!("{e:#}")))?;
    let key_text = key_pem(&key);
    crate::proxy::certs::certified(chain.clone(), key).map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("does not match") {
            (
                "key_pem",
                "the private key does not belong to this certificate".to_string(),
            )
        } else if text.contains("unsupported private key") {
            ("key_pem", text)
        } else {
            ("certificate_pem", text)
        }
    })?;
    let facts = facts(&chain[0]).map_err(|e| ("certificate_pem", format!("{e:#}")))?;
    if facts.not_after <= now {
        return Err((
            "certificate_pem",
            format!(
                "the certificate expired on {}",
                crate::store::rfc3339(facts.not_after)
            ),
        ));
    }
    for host in required {
        if !facts.names.iter().any(|n| covers(n, host)) {
            return Err((
                "domains",
                format!(
                    "the certificate does not cover {host} (it names {})",
                    facts.names.join(", ")
                ),
            ));
        }
    }
    Ok(Checked {
        chain_pem: chain_pem(&chain),
        key_pem: key_text,
        facts,
    })
}

/// Reads a stored chain + key back into what the proxy serves.
pub fn loaded(chain_text: &str, key_text: &str) -> anyhow::Result<crate::proxy::certs::Loaded> {
    let chain = parse_chain(chain_text).context("stored chain")?;
    let key = parse_key(key_text).context("stored key")?;
    crate::proxy::certs::certified(chain, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn wildcards_cover_one_level_only() {
        assert!(covers("a.example.com", "a.example.com"));
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("a.example.com", "b.example.com"));
    }

    #[test]
    fn an_upload_is_reserialised_and_checked() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (cert, key) = self_signed(&["shop.example.com"]);
        let messy = format!("some text a tool printed\n{cert}\ntrailing words\n");
        let ok = check_upload(&messy, &key, None, &["shop.example.com".into()], 0).unwrap();
        assert!(!ok.chain_pem.contains("some text"));
        assert!(ok.chain_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(ok.facts.names, ["shop.example.com"]);
        assert_eq!(ok.facts.fingerprint.len(), 64);
        // Round trip: what is stored loads as what the proxy serves.
        loaded(&ok.chain_pem, &ok.key_pem).unwrap();

        let (_, other_key) = self_signed(&["x.example.com"]);
        let (field, why) = check_upload(&cert, &other_key, None, &[], 0).err().unwrap();
        assert_eq!(field, "key_pem");
        assert!(why.contains("does not belong"), "{why}");

        let (field, why) = check_upload(&cert, &key, None, &["other.example.com".into()], 0)
            .err()
            .unwrap();
        assert_eq!(field, "domains");
        assert!(why.contains("other.example.com"), "{why}");

        let (field, _) = check_upload("not a pem", &key, None, &[], 0).err().unwrap();
        assert_eq!(field, "certificate_pem");
        let (field, _) = check_upload(&cert, "nope", None, &[], 0).err().unwrap();
        assert_eq!(field, "key_pem");
        let (field, why) = check_upload(&cert, &key, None, &[], i64::MAX / 2)
            .err()
            .unwrap();
        assert_eq!(field, "certificate_pem");
        assert!(why.contains("expired"), "{why}");
    }
}
