//! Request and response bodies of the REST API, shared by the server (which
//! also derives their OpenAPI schemas) and the browser (which sends them), so
//! that both halves agree at compile time.

use serde::{Deserialize, Serialize};

/// What a caller may do. Each scope includes the ones before it:
/// `read` only reads, `write` also changes resources, `admin` also manages
/// API tokens and security settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The JSON body of every error: `{"error":{"code","message","field"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid`, `unauthorized`, `totp_required`.
    pub code: String,
    /// Human-readable explanation; never contains internal details.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SetupStatus {
    /// True while no administrator exists.
    pub required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token from the log or `<data-dir>/setup-token`. A
    /// missing token is treated like a wrong one (403).
    #[serde(default)]
    pub token: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Six-digit TOTP code, or a recovery code, once a second factor is enrolled.
    #[serde(default)]
    pub totp_code: Option<String>,
}

/// Returned by setup and login: the session cookie is set alongside.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub username: String,
    /// Send back as `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
}

/// Returned by setup: the session, and the recovery key, shown this once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SetupComplete {
    pub username: String,
    pub csrf_token: String,
    /// Opens this berth's sealed secrets if `master.key` is ever lost
    /// (`berth secrets recover`). berth keeps only its public half: store
    /// it off this host now; it is not shown again.
    pub recovery_key: String,
    /// The backup key's secret half (`AGE-SECRET-KEY-1…`): opens berth's
    /// encrypted backups without berth (`age -d -i key.txt`). Shown only
    /// this once. Empty when the server made no backup key.
    #[serde(default)]
    pub backup_identity: String,
}

impl std::fmt::Debug for SetupComplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetupComplete({}, [redacted])", self.username)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Me {
    pub username: String,
    /// `session` for a browser login, `token` for an API token.
    pub auth: String,
    pub scopes: Vec<Scope>,
    /// Present for browser sessions only.
    pub csrf_token: Option<String>,
    pub totp_enabled: bool,
    /// Set after `berth admin reset-password`: until a new password is
    /// chosen, the session may only change it or log out.
    pub must_change_password: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Domain the panel will be served on (used by the certificates capability).
    pub panel_domain: Option<String>,
    /// Contact e-mail for the ACME account.
    pub acme_email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 64))]
    pub name: String,
    #[cfg_attr(feature = "ssr", schema(min_items = 1))]
    pub scopes: Vec<Scope>,
    /// 1..=3650; defaults to 90.
    #[serde(default)]
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<u32>,
}

/// The only response that ever contains a token's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub id: String,
    pub token: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub client_ip: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordConfirmation {
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    /// Base32 secret for manual entry.
    pub secret: String,
    pub otpauth_uri: String,
    /// The `otpauth_uri` as an SVG QR code.
    pub qr_svg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TotpDisable {
    pub password: String,
    pub code: String,
}

/// Shown once, when TOTP is enabled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

mod apps;
pub use apps::*;
mod domains;
pub use domains::*;
mod certificates;
pub use certificates::*;
pub mod backups;
pub mod dotenv;
pub mod firewall;
mod secrets;
pub use secrets::*;
