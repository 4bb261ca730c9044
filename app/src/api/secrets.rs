//! Environment secrets: names and metadata go out, values only come in.
//! The one exception, `reveal`, needs the admin scope and the password.

use serde::{Deserialize, Serialize};

/// Whose secret it is: one app's, or a shared group's that apps attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SecretScope {
    App,
    Group,
}

impl SecretScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretScope::App => "app",
            SecretScope::Group => "group",
        }
    }

    /// The path segment of its API: `apps` or `secret-groups`.
    pub fn collection(self) -> &'static str {
        match self {
            SecretScope::App => "apps",
            SecretScope::Group => "secret-groups",
        }
    }
}

/// One secret, without its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    /// The environment variable name, `[A-Z_][A-Z0-9_]*`.
    pub name: String,
    /// Where it comes from: the app itself, or the group named in `group`.
    pub scope: SecretScope,
    pub group: Option<String>,
    /// The length of the value in bytes: enough to spot an empty or
    /// truncated paste, not enough to guess it.
    pub length: usize,
    pub created_at: String,
    pub updated_at: String,
    /// Who set the current value (`admin` or `token:<name>`).
    pub updated_by: String,
    /// False when a secret of higher precedence with the same name wins
    /// (the app's own over a group's, a later group over an earlier one).
    pub effective: bool,
    /// True when it replaces a plain `env` entry of the same name.
    pub overrides_env: bool,
}

/// `GET /apps/{name}/secrets` and `GET /secret-groups/{group}/secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SecretList {
    pub scope: SecretScope,
    /// The app or group name.
    pub owner: String,
    /// The owner's own secrets, by name.
    pub secrets: Vec<SecretInfo>,
    /// For an app: the secrets its groups give it, in precedence order.
    #[serde(default)]
    pub inherited: Vec<SecretInfo>,
    /// For a group: the apps attached to it. For an app: its groups.
    #[serde(default)]
    pub linked: Vec<String>,
    /// Apps whose running container has other secrets than these (changed
    /// since it was created): they need a redeploy to see the new values.
    #[serde(default)]
    pub needs_redeploy: Vec<String>,
}

/// `PUT …/secrets/{KEY}` body.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// Write-only. Up to 32 KiB, no NUL byte.
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// The answer to a change: the secret's metadata and which apps now need a
/// redeploy (or are being redeployed, when they opted in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SecretChange {
    pub secret: Option<SecretInfo>,
    pub needs_redeploy: Vec<String>,
    /// Apps with `redeploy_on_secret_change` that berth redeploys now.
    pub redeploying: Vec<String>,
}

/// `POST …/reveal` and `POST …/secrets/export` body: a fresh proof that
/// the admin is at the keyboard.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reauth {
    pub password: String,
    /// The current TOTP code, when the second factor is on.
    #[serde(default)]
    pub totp_code: Option<String>,
}

impl std::fmt::Debug for Reauth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reauth([redacted])")
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Revealed {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Revealed({}, [redacted])", self.name)
    }
}

/// `POST …/secrets/import` body: the text of a `.env` file.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub dotenv: String,
    /// Check and preview only; nothing is stored.
    #[serde(default)]
    pub dry_run: bool,
    /// Also delete the owner's secrets the file does not name.
    #[serde(default)]
    pub replace: bool,
}

impl std::fmt::Debug for ImportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImportRequest {{ dotenv: [{} bytes], dry_run: {}, replace: {} }}",
            self.dotenv.len(),
            self.dry_run,
            self.replace
        )
    }
}

/// What an import did (or, with `dry_run`, would do). Names only.
/// `unchanged` is reported to callers with the admin scope only (who may
/// read values anyway); for others every named secret counts as `changed`,
/// so a dry run cannot confirm a guess at a stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ImportPreview {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    pub dry_run: bool,
    pub needs_redeploy: Vec<String>,
    pub redeploying: Vec<String>,
}

/// `POST …/secrets/export` answer.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Exported {
    pub dotenv: String,
}

impl std::fmt::Debug for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exported([redacted])")
    }
}

/// A shared group of secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SecretGroup {
    pub name: String,
    pub description: String,
    pub secrets: usize,
    /// Apps that list the group in `secret_groups`.
    pub apps: Vec<String>,
    pub created_at: String,
}

/// `POST /secret-groups` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretGroupInput {
    /// Lowercase letters, digits and `-`, up to 63.
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// The state of the key that protects every sealed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct KeyStatus {
    /// Where the master key comes from: `file` (path) or `environment`.
    pub master_source: String,
    pub master_path: Option<String>,
    /// The id of the data key new secret values are sealed with.
    pub data_key_id: i64,
    pub data_key_created_at: String,
    pub secrets: usize,
    /// Whether a recovery key exists (its public half is stored; the
    /// private half was shown once).
    pub recovery_configured: bool,
    pub recovery_created_at: Option<String>,
}

/// A recovery key, shown once: it alone can restore a lost master key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RecoveryKey {
    /// An age identity (`AGE-SECRET-KEY-1…`). Keep it off this host.
    pub recovery_key: String,
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey([redacted])")
    }
}

/// The container environment as berth shows it: secret values masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EnvEntry {
    pub name: String,
    /// `None` for a secret.
    pub value: Option<String>,
    pub secret: bool,
}

/// What every env-var name must look like.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_');
    if !first_ok || name.len() > 255 {
        return Err(format!(
            "`{}` is not a variable name: use [A-Z_][A-Z0-9_]*, up to 255 characters",
            shorten(name)
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "`{}` is not a variable name: {bad:?} is not allowed (use [A-Z_][A-Z0-9_]*)",
            shorten(name)
        ));
    }
    Ok(())
}

/// The largest value berth stores: the same as a plain `env` value, well
/// below what a process environment holds, and what fits an API body.
pub const MAX_SECRET_BYTES: usize = 32 * 1024;

pub fn check_secret_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "the value is {} bytes; the limit is {MAX_SECRET_BYTES}",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err("the value contains a NUL byte, which no environment can carry".into());
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
