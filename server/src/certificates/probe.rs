//! The expiry probe: a TLS handshake with each domain through the listener
//! the public uses, reading the certificate actually served — not the one
//! berth believes it serves. A stale nginx, a certificate copied over by hand
//! or a renewal that never went live all show up here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sqlx::Row;

use app::api::ProbeResult;

use super::{pem, Certificates};
use crate::http::error::ApiError;
use crate::notify::Notice;

/// Accepts any certificate and keeps the leaf: the probe wants to see what
/// is served, valid or not.
#[derive(Debug)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The leaf certificate (DER) served at `addr` for `host`, or why none was.
pub async fn served(addr: SocketAddr, host: &str) -> Result<Vec<u8>, String> {
    let seen = Arc::new(Mutex::new(None));
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture(seen.clone())))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    let handshake = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| format!("no TLS answer from {addr} within 10 s"))?;
    let leaf = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (handshake, leaf) {
        (_, Some(leaf)) => Ok(leaf),
        (Err(e), None) => Err(e),
        (Ok(_), None) => Err("the server sent no certificate".into()),
    }
}

impl Certificates {
    /// The probe's last readings.
    pub async fn probes(&self) -> Result<Vec<ProbeResult>, ApiError> {
        Ok(sqlx::query(
            "SELECT host, checked_at, served_fingerprint, served_not_after, expected_certificate, status, detail \
             FROM certificate_probes ORDER BY host",
        )
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| ProbeResult {
            host: r.get("host"),
            checked_at: crate::store::rfc3339(r.get("checked_at")),
            served_fingerprint: r.get("served_fingerprint"),
            served_not_after: r
                .get::<Option<i64>, _>("served_not_after")
                .map(crate::store::rfc3339),
            expected_certificate: r.get("expected_certificate"),
            status: r.get("status"),
            detail: r.get("detail"),
        })
        .collect())
    }

    /// Handshakes with every domain through the public HTTPS listener,
    /// compares what is served with what the store expects, and notifies
    /// once per new problem.
    pub async fn probe(&self) -> Result<Vec<ProbeResult>, ApiError> {
        let _one = self.probing.lock().await;
        let now = self.clock.now();
        self.last_probe
            .store(now, std::sync::atomic::Ordering::Relaxed);
        let Some(addr) = self.config.probe_address.or(self.proxy.https_address()) else {
            return Err(ApiError::Conflict(
                "the proxy has no HTTPS listener to probe".into(),
            ));
        };
        let hosts: Vec<String> = self
            .wishes()
            .await?
            .into_iter()
            .map(|(h, _, _)| h)
            .collect();
        let expected = sqlx::query(
            "SELECT id, domains, fingerprint, not_after FROM certificates \
             WHERE chain_pem IS NOT NULL AND state != 'retired' ORDER BY not_after DESC",
        )
        .fetch_all(&self.db)
        .await?;
        let warn = i64::from(self.config.expiry_warning_days) * 86_400;
        for host in &hosts {
            // The stored certificate the proxy should pick: the one covering
            // the host that is valid longest (the proxy's own rule).
            // The proxy's own choice: an exact name before a wildcard, then
            // the one valid longest (rows come longest first).
            let names_of = |r: &sqlx::sqlite::SqliteRow| {
                serde_json::from_str::<Vec<String>>(r.get::<&str, _>("domains")).unwrap_or_default()
            };
            let best = expected
                .iter()
                .find(|r| names_of(r).iter().any(|n| n == host))
                .or_else(|| {
                    expected
                        .iter()
                        .find(|r| names_of(r).iter().any(|n| pem::covers(n, host)))
                });
            let expected_id: Option<String> = best.map(|r| r.get("id"));
            let expected_fp: Option<String> = best.and_then(|r| r.get("fingerprint"));
            let (fp, not_after, status, detail) = match served(addr, host).await {
                Err(e) => match &expected_id {
                    Some(id) => (
                        None,
                        None,
                        "unreachable",
                        Some(format!(
                            "berth holds {id} for this host, but the listener did not present it: {e}"
                        )),
                    ),
                    None => (
                        None,
                        None,
                        "missing",
                        Some(format!("no certificate is served for this host ({e})")),
                    ),
                },
                Ok(der) => {
                    let fp = pem::fingerprint(&der);
                    let leaf = rustls::pki_types::CertificateDer::from(der);
                    let not_after = pem::facts(&leaf).ok().map(|f| f.not_after);
                    let (status, detail) = if expected_fp.as_deref() != Some(fp.as_str()) {
                        (
                            "mismatch",
                            Some(match &expected_id {
                                Some(id) => format!(
                                    "the listener serves a certificate other than berth's {id}: \
                                     a renewal that did not go live, or a file in the certificate directory"
                                ),
                                None => "the listener serves a certificate berth does not manage".into(),
                            }),
                        )
                    } else {
                        match not_after {
                            Some(t) if t <= now => (
                                "expired",
                                Some(format!("expired {}", crate::store::rfc3339(t))),
                            ),
                            Some(t) if t - now <= warn => (
                                "expiring",
                                Some(format!("expires {}", crate::store::rfc3339(t))),
                            ),
                            _ => ("ok", None),
                        }
                    };
                    (Some(fp), not_after, status, detail)
                }
            };
            let previous: Option<Option<String>> =
                sqlx::query_scalar("SELECT notified_status FROM certificate_probes WHERE host = ?")
                    .bind(host)
                    .fetch_optional(&self.db)
                    .await?;
            let notified = previous.flatten();
            let announce = status != "ok" && notified.as_deref() != Some(status);
            let notified_now = if status == "ok" {
                None
            } else {
                Some(status.to_string())
            };
            sqlx::query(
                "INSERT INTO certificate_probes (host, checked_at, served_fingerprint, served_not_after, \
                 expected_certificate, status, detail, notified_status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (host) DO UPDATE SET checked_at = ?2, served_fingerprint = ?3, served_not_after = ?4, \
                 expected_certificate = ?5, status = ?6, detail = ?7, notified_status = ?8",
            )
            .bind(host)
            .bind(now)
            .bind(&fp)
            .bind(not_after)
            .bind(&expected_id)
            .bind(status)
            .bind(&detail)
            .bind(&notified_now)
            .execute(&self.db)
            .await?;
            if announce {
                self.notifier
                    .send(&Notice {
                        event: format!("certificate.{status}"),
                        subject: format!("berth: the certificate for {host} is {status}"),
                        text: detail.clone().unwrap_or_default(),
                        details: serde_json::json!({
                            "host": host,
                            "status": status,
                            "served_fingerprint": fp,
                            "served_not_after": not_after.map(crate::store::rfc3339),
                            "expected_certificate": expected_id,
                        }),
                    })
                    .await;
            }
        }
        // Hosts no longer served are forgotten.
        let all: Vec<String> = sqlx::query_scalar("SELECT host FROM certificate_probes")
            .fetch_all(&self.db)
            .await?;
        for h in all.iter().filter(|h| !hosts.contains(h)) {
            sqlx::query("DELETE FROM certificate_probes WHERE host = ?")
                .bind(h)
                .execute(&self.db)
                .await?;
        }
        self.probes().await
    }
}
