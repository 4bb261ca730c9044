//! Certificates: the ACME account, orders and renewals, uploaded
//! certificates, DNS providers for DNS-01, what the HTTPS listener actually
//! serves, and the notification channels that hear about problems.

use serde::{Deserialize, Serialize};

/// `GET /acme` answer. Secrets (the EAB HMAC key, the account key) are never
/// returned; `eab_configured` says whether one is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AcmeSettings {
    /// The CA's directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    /// Absent: ACME is not configured and nothing is ordered automatically.
    pub directory_url: Option<String>,
    pub email: Option<String>,
    pub eab_configured: bool,
    /// The key id of the external account binding, when one is configured.
    pub eab_kid: Option<String>,
    /// PEM roots trusted for the CA's own HTTPS (a private CA), besides the
    /// usual public roots.
    pub extra_roots_pem: Option<String>,
    /// The account URL at the CA, once registered.
    pub account_id: Option<String>,
    /// Presets the UI offers.
    pub presets: Vec<AcmePreset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AcmePreset {
    pub name: String,
    pub directory_url: String,
}

/// `PUT /acme` body. Changing the directory or the e-mail registers a new
/// account on the next order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcmeSettingsInput {
    pub directory_url: String,
    #[serde(default)]
    pub email: Option<String>,
    /// External account binding (ZeroSSL, Google, many private CAs).
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab: Option<EabInput>,
    #[serde(default)]
    pub extra_roots_pem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EabInput {
    pub kid: String,
    /// Write-only: the base64url HMAC key the CA gave you. May be omitted to
    /// keep the stored key of the same `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum ChallengeKind {
    /// Answered by berth's proxy on port 80.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A TXT record set through a DNS provider; needed for wildcards.
    #[serde(rename = "dns-01")]
    Dns01,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum KeyType {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

/// `POST /certificates` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Names on the certificate, the first is its subject; `*.example.com`
    /// needs `dns-01`.
    pub domains: Vec<String>,
    #[serde(default)]
    pub challenge: ChallengeKind,
    /// The DNS provider for `dns-01`; may be omitted when only one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_provider: Option<String>,
    #[serde(default)]
    pub key_type: KeyType,
}

/// `POST /certificates/upload` body: PEM text as pasted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The certificate, optionally followed by its chain.
    pub certificate_pem: String,
    /// Write-only: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// Intermediates, if not appended to `certificate_pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<String>,
    /// Names the certificate must cover (e.g. the domain it is for).
    #[serde(default)]
    pub domains: Vec<String>,
}

/// One certificate berth manages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Certificate {
    pub id: String,
    pub domains: Vec<String>,
    /// `acme` or `upload`.
    pub source: String,
    pub challenge: Option<ChallengeKind>,
    pub dns_provider: Option<String>,
    pub key_type: Option<KeyType>,
    /// `pending`, `issuing`, `valid`, `failed`, `expired` or `retired`
    /// (no domain uses it any more, so it is not renewed).
    pub state: String,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// SHA-256 of the leaf, hex.
    pub fingerprint: Option<String>,
    /// When berth will renew it (ACME only).
    pub renew_at: Option<String>,
    /// Why `renew_at` is what it is: `ari`, `two-thirds` or `retry`.
    pub renew_reason: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// True when berth ordered it for a domain on its own.
    pub automatic: bool,
    /// Steps of the latest attempt, oldest first.
    pub steps: Vec<IssuanceStep>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct IssuanceStep {
    pub at: String,
    /// `self-test`, `account`, `order`, `authorization`, `challenge`,
    /// `validation`, `finalize`, `download` or `install`.
    pub step: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub detail: Option<String>,
}

/// DNS provider used for DNS-01: RFC 2136 dynamic updates with TSIG, or the
/// PowerDNS HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DnsProviderConfig {
    Rfc2136 {
        /// `host:port` of the primary that accepts updates, e.g. `10.0.0.2:53`.
        server: String,
        /// Zone the records go in, e.g. `example.com`.
        zone: String,
        key_name: String,
        /// `hmac-sha256` (default) or `hmac-sha512`.
        #[serde(default = "default_tsig_algorithm")]
        algorithm: String,
    },
    Powerdns {
        /// Base URL of the API, e.g. `http://10.0.0.2:8081`.
        api_url: String,
        /// `localhost` for most installs.
        #[serde(default = "default_pdns_server")]
        server_id: String,
        zone: String,
    },
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}
fn default_pdns_server() -> String {
    "localhost".into()
}

/// `POST /dns-providers` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsProviderInput {
    pub name: String,
    pub config: DnsProviderConfig,
    /// Write-only: the TSIG secret (base64) or the API key.
    pub secret: String,
    /// Lets `server` / `api_url` be a loopback or private address.
    #[serde(default)]
    pub allow_internal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DnsProvider {
    pub name: String,
    pub config: DnsProviderConfig,
    pub allow_internal: bool,
    pub created_at: String,
}

/// What the HTTPS listener served for one host at the last probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProbeResult {
    pub host: String,
    pub checked_at: String,
    /// SHA-256 of the certificate served, hex; absent if none was.
    pub served_fingerprint: Option<String>,
    pub served_not_after: Option<String>,
    /// The certificate berth expects to be served for the host.
    pub expected_certificate: Option<String>,
    /// `ok`, `mismatch`, `expiring`, `expired`, `missing` or `unreachable`.
    pub status: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    Starttls,
    /// No TLS: only for a relay on the same host or network.
    None,
}

/// A place notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// JSON POST; with a secret, `X-Berth-Signature: sha256=<hex HMAC of the body>`.
    Webhook { url: String },
    Email {
        host: String,
        port: u16,
        security: SmtpSecurity,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        from: String,
        to: Vec<String>,
    },
}

/// `POST /notifications/channels` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    pub name: String,
    pub config: ChannelConfig,
    /// Write-only: the webhook's HMAC key or the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Lets the URL or SMTP host be a loopback or private address.
    #[serde(default)]
    pub allow_internal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub config: ChannelConfig,
    pub has_secret: bool,
    pub allow_internal: bool,
    pub created_at: String,
    pub last_sent_at: Option<String>,
    pub last_error: Option<String>,
}

/// `POST /notifications/channels/{id}/test` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChannelTest {
    pub delivered: bool,
    pub error: Option<String>,
}
