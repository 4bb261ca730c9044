//! The host firewall: the admin's rules, compiled into berth's own nftables
//! table (`inet berth`, and nothing else), applied as one transaction with a
//! confirmation window that rolls back by itself.
//!
//! - `compile`: rules → nft JSON and text; the verdict model used to judge.
//! - `nft`: the adapter to `nft` and `ss`, on the host or in a namespace.
//! - `apply`: apply, confirm, roll back, re-apply at start and on drift.
//! - `report`: the plan, the status and the exposure report.
//! - `presets`: ready-made rules.

pub mod apply;
pub mod compile;
pub mod nft;
pub mod presets;
pub mod report;
pub mod routes;

pub use routes::MAX_RULES_BODY;

use std::net::IpAddr;
use std::sync::Arc;

use app::api::firewall::{check_config, FirewallConfig, FirewallRules, Mode, Protocol};
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use crate::http::connections::Connections;
use crate::http::error::ApiError;

/// How the firewall is set up in berth's configuration.
#[derive(Debug, Clone)]
pub struct FirewallSettings {
    /// Run nft in this network namespace instead of the host's.
    pub netns: Option<String>,
    /// The default confirmation window.
    pub confirm_seconds: u32,
    /// The panel's port, kept open for the admin by the lockout guard.
    pub panel_port: u16,
}

pub struct Firewall {
    db: SqlitePool,
    nft: nft::Nft,
    apps: Arc<crate::apps::Apps>,
    notifier: Arc<crate::notify::Notifier>,
    connections: Arc<Connections>,
    settings: FirewallSettings,
    /// One apply, confirm, rollback or repair at a time.
    lock: Mutex<()>,
    /// The connection watermark of the pending apply: a confirmation must
    /// come over a connection numbered at or above it.
    pending_watermark: std::sync::Mutex<Option<(i64, u64)>>,
}

/// The stored row, decoded.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub desired: FirewallConfig,
    pub revision: i64,
    pub applied: Option<FirewallConfig>,
    pub applied_revision: Option<i64>,
    pub fingerprint: Option<String>,
}

pub(crate) fn off() -> FirewallConfig {
    FirewallConfig {
        enabled: false,
        mode: Mode::Standalone,
        rules: Vec::new(),
    }
}

impl Firewall {
    pub fn new(
        db: SqlitePool,
        apps: Arc<crate::apps::Apps>,
        notifier: Arc<crate::notify::Notifier>,
        connections: Arc<Connections>,
        settings: FirewallSettings,
    ) -> Firewall {
        Firewall {
            db,
            nft: nft::Nft::new(settings.netns.clone()),
            apps,
            notifier,
            connections,
            settings,
            lock: Mutex::new(()),
            pending_watermark: std::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &FirewallSettings {
        &self.settings
    }

    pub(crate) async fn state(&self) -> Result<State, ApiError> {
        let row = sqlx::query(
            "SELECT desired, revision, applied, applied_revision, fingerprint \
             FROM firewall_state WHERE id = 1",
        )
        .fetch_optional(&self.db)
        .await?;
        let Some(row) = row else {
            return Ok(State {
                desired: off(),
                revision: 0,
                applied: None,
                applied_revision: None,
                fingerprint: None,
            });
        };
        let decode = |text: &str| {
            serde_json::from_str::<FirewallConfig>(text)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored firewall rules: {e}")))
        };
        Ok(State {
            desired: decode(row.get::<&str, _>("desired"))?,
            revision: row.get("revision"),
            applied: match row.get::<Option<&str>, _>("applied") {
                Some(t) => Some(decode(t)?),
                None => None,
            },
            applied_revision: row.get("applied_revision"),
            fingerprint: row.get("fingerprint"),
        })
    }

    /// `GET /firewall/rules`.
    pub async fn rules(&self) -> Result<FirewallRules, ApiError> {
        let s = self.state().await?;
        Ok(FirewallRules {
            enabled: s.desired.enabled,
            mode: s.desired.mode,
            rules: s.desired.rules,
            revision: s.revision,
            applied_revision: s.applied_revision,
            warnings: Vec::new(),
        })
    }

    /// Validates `config` for a caller at `client`: every field, then the
    /// lockout guard. Answers the warnings.
    pub fn check(&self, config: &FirewallConfig, client: IpAddr) -> Result<Vec<String>, ApiError> {
        let inputs = self.admit(config, client)?;
        Ok(report::warnings(&inputs, client))
    }

    /// Validation and the lockout guard, without the warnings (whose
    /// shadowed-rule search is quadratic in the rules): what an apply needs.
    pub(crate) fn admit(
        &self,
        config: &FirewallConfig,
        client: IpAddr,
    ) -> Result<compile::Inputs, ApiError> {
        let rules = check_config(config).map_err(|e| ApiError::invalid(e.field, e.message))?;
        let inputs = compile::Inputs {
            enabled: config.enabled,
            mode: config.mode,
            rules,
            comments: Vec::new(),
            published: Vec::new(),
        };
        self.guard(&inputs, client)?;
        Ok(inputs)
    }

    /// Refuses rules that would cut the caller off from the panel.
    fn guard(&self, inputs: &compile::Inputs, client: IpAddr) -> Result<(), ApiError> {
        // Loopback is always let through, and an in-process call has no
        // address to protect.
        if client.is_loopback() || client.is_unspecified() {
            return Ok(());
        }
        let port = self.settings.panel_port;
        match compile::judge(inputs, Protocol::Tcp, port, client) {
            None => Ok(()),
            Some((Some(i), action)) => {
                Err(ApiError::invalid(
                    format!("rules[{i}]"),
                    format!(
                    "this rule would {} your own connection to the panel (TCP port {port} from \
                     {client}); allow it first, e.g. with the panel preset",
                    if action == app::api::firewall::Action::Reject { "reject" } else { "drop" }
                ),
                ))
            }
            Some((None, _)) => Err(ApiError::invalid(
                "rules",
                format!(
                    "with the default drop, no rule lets your address {client} reach the panel \
                     (TCP port {port}); you would be locked out. Add an allow rule for it, e.g. \
                     the panel preset"
                ),
            )),
        }
    }

    /// `PUT /firewall/rules`: stores the desired rules (nothing is applied).
    pub async fn put(
        &self,
        config: FirewallConfig,
        client: IpAddr,
    ) -> Result<FirewallRules, ApiError> {
        let warnings = self.check(&config, client)?;
        let text = serde_json::to_string(&config).map_err(|e| ApiError::Internal(e.into()))?;
        let now = crate::store::now();
        sqlx::query(
            "INSERT INTO firewall_state (id, desired, revision, updated_at) VALUES (1, ?, 1, ?) \
             ON CONFLICT (id) DO UPDATE SET desired = excluded.desired, \
             revision = firewall_state.revision + 1, updated_at = excluded.updated_at",
        )
        .bind(&text)
        .bind(now)
        .execute(&self.db)
        .await?;
        let mut rules = self.rules().await?;
        rules.warnings = warnings;
        Ok(rules)
    }

    /// What the rules are judged with: checked rules plus the published
    /// ports Docker has now.
    pub(crate) async fn inputs(
        &self,
        config: &FirewallConfig,
    ) -> Result<compile::Inputs, ApiError> {
        let rules = check_config(config).map_err(|e| ApiError::invalid(e.field, e.message))?;
        // Coexist mode drops by default only what Docker publishes: without
        // that list, loading would open every published port. Refuse.
        let published = if config.enabled && config.mode == Mode::Coexist {
            report::try_published(&self.apps)
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!(
                        "coexist mode needs the ports Docker publishes, and the engine did not \
                         answer: {e}"
                    ))
                })?
                .into_iter()
                .map(|p| (p.protocol, p.port))
                .collect()
        } else {
            Vec::new()
        };
        Ok(compile::Inputs {
            enabled: config.enabled,
            mode: config.mode,
            rules,
            comments: config.rules.iter().map(|r| r.comment.clone()).collect(),
            published,
        })
    }
}
