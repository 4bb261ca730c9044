//! Environment secrets: sealed at rest (`vault`), under keys rooted in the
//! master key (`keyring`), injected into containers when they are created.
//!
//! Precedence, lowest first: the app's plain `env`, then its groups in the
//! order of `secret_groups` (a later group wins), then the app's own
//! secrets. Containers carry a stamp of the revisions they were made with
//! (`NAME@revision`, never values), which is how berth tells which apps need
//! a redeploy without decrypting anything.

pub mod keyring;
pub mod reseal;
pub mod routes;
pub mod vault;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use app::api::{
    check_secret_name, check_secret_value, dotenv, AppSpec, ImportPreview, KeyStatus, SecretGroup,
    SecretInfo, SecretScope,
};
use sqlx::{Row, SqlitePool};
use zeroize::Zeroizing;

use crate::config::MasterKeySource;
use crate::crypto::Keys;
use crate::http::error::ApiError;
use vault::Identity;

/// The environment a container is created with, beyond its plain `env`.
#[derive(Default)]
pub struct Injected {
    pub env: Vec<(String, Zeroizing<String>)>,
    pub stamp: String,
}

/// A stored secret's metadata.
#[derive(Debug, Clone)]
struct Meta {
    scope: SecretScope,
    owner: String,
    name: String,
    length: usize,
    revision: String,
    created_at: i64,
    updated_at: i64,
    updated_by: String,
}

pub struct Secrets {
    db: SqlitePool,
    keys: Arc<Keys>,
    master: MasterKeySource,
}

impl Secrets {
    pub fn new(db: SqlitePool, keys: Arc<Keys>, master: MasterKeySource) -> Secrets {
        Secrets { db, keys, master }
    }

    // ---- reading ---------------------------------------------------------

    async fn metas(&self, filter: Option<(SecretScope, &str)>) -> Result<Vec<Meta>, ApiError> {
        let mut q = String::from(
            "SELECT scope, owner, name, length, revision, created_at, updated_at, updated_by \
             FROM secrets",
        );
        if filter.is_some() {
            q.push_str(" WHERE scope = ? AND owner = ?");
        }
        q.push_str(" ORDER BY scope, owner, name");
        let mut query = sqlx::query(&q);
        if let Some((scope, owner)) = filter {
            query = query.bind(scope.as_str()).bind(owner);
        }
        Ok(query
            .fetch_all(&self.db)
            .await?
            .into_iter()
            .map(|r| Meta {
                scope: scope_of(&r.get::<String, _>("scope")),
                owner: r.get("owner"),
                name: r.get("name"),
                length: r.get::<i64, _>("length") as usize,
                revision: r.get("revision"),
                created_at: r.get("created_at"),
                updated_at: r.get("updated_at"),
                updated_by: r.get("updated_by"),
            })
            .collect())
    }

    /// The secrets `spec` gets, by name, after precedence: (winner, all in
    /// precedence order, lowest first).
    fn effective<'m>(spec: &AppSpec, all: &'m [Meta]) -> BTreeMap<&'m str, Vec<&'m Meta>> {
        let mut by_name: BTreeMap<&str, Vec<&Meta>> = BTreeMap::new();
        for group in &spec.secret_groups {
            for m in all
                .iter()
                .filter(|m| m.scope == SecretScope::Group && &m.owner == group)
            {
                by_name.entry(&m.name).or_default().push(m);
            }
        }
        for m in all
            .iter()
            .filter(|m| m.scope == SecretScope::App && m.owner == spec.name)
        {
            by_name.entry(&m.name).or_default().push(m);
        }
        by_name
    }

    fn stamp_of(spec: &AppSpec, all: &[Meta]) -> String {
        Self::effective(spec, all)
            .into_iter()
            .filter_map(|(name, chain)| chain.last().map(|m| format!("{name}@{}", m.revision)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The stamp a container made from `spec` now would carry.
    pub async fn stamp(&self, spec: &AppSpec) -> Result<String, ApiError> {
        Ok(Self::stamp_of(spec, &self.metas(None).await?))
    }

    /// Stamps for many apps with one read.
    pub async fn stamps<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a AppSpec>,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let all = self.metas(None).await?;
        Ok(specs
            .into_iter()
            .map(|s| (s.name.clone(), Self::stamp_of(s, &all)))
            .collect())
    }

    /// The decrypted secrets for a container of `spec`, read in one
    /// transaction so a concurrent rotation cannot mix keys.
    pub async fn resolve(&self, spec: &AppSpec) -> Result<Injected, ApiError> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query("SELECT scope, owner, name, key_id, sealed, revision FROM secrets")
            .fetch_all(&mut *tx)
            .await?;
        let wanted = |scope: SecretScope, owner: &str| match scope {
            SecretScope::App => owner == spec.name,
            SecretScope::Group => spec.secret_groups.iter().any(|g| g == owner),
        };
        let rank = |scope: SecretScope, owner: &str| match scope {
            SecretScope::App => usize::MAX,
            SecretScope::Group => spec
                .secret_groups
                .iter()
                .position(|g| g == owner)
                .unwrap_or(0),
        };
        let mut chosen: BTreeMap<String, (usize, sqlx::sqlite::SqliteRow)> = BTreeMap::new();
        for r in rows {
            let scope = scope_of(&r.get::<String, _>("scope"));
            let owner: String = r.get("owner");
            if !wanted(scope, &owner) {
                continue;
            }
            let name: String = r.get("name");
            let rank = rank(scope, &owner);
            if chosen.get(&name).is_none_or(|(have, _)| rank >= *have) {
                chosen.insert(name, (rank, r));
            }
        }
        let mut keys = vault::KeyCache::default();
        let mut out = Injected::default();
        let mut stamp = Vec::new();
        for (name, (_, r)) in chosen {
            let key = keys.get(&mut tx, &self.keys, r.get("key_id")).await?;
            let owner: String = r.get("owner");
            let who = Identity {
                scope: scope_of(&r.get::<String, _>("scope")),
                owner: &owner,
                name: &name,
            };
            let value = vault::open(key, &who, &r.get::<Vec<u8>, _>("sealed"))?;
            stamp.push(format!("{name}@{}", r.get::<String, _>("revision")));
            out.env.push((name, value));
        }
        tx.commit().await?;
        out.stamp = stamp.join(",");
        Ok(out)
    }

    /// The owner's secrets, and for an app those its groups give it.
    pub async fn list(
        &self,
        scope: SecretScope,
        owner: &str,
        spec: Option<&AppSpec>,
    ) -> Result<(Vec<SecretInfo>, Vec<SecretInfo>), ApiError> {
        let all = self.metas(None).await?;
        let plain_env = |name: &str| spec.is_some_and(|s| s.env.contains_key(name));
        let info = |m: &Meta, effective: bool| SecretInfo {
            name: m.name.clone(),
            scope: m.scope,
            group: (m.scope == SecretScope::Group).then(|| m.owner.clone()),
            length: m.length,
            created_at: crate::store::rfc3339(m.created_at),
            updated_at: crate::store::rfc3339(m.updated_at),
            updated_by: m.updated_by.clone(),
            effective,
            overrides_env: effective && plain_env(&m.name),
        };
        let Some(spec) = spec.filter(|_| scope == SecretScope::App) else {
            let own = all
                .iter()
                .filter(|m| m.scope == scope && m.owner == owner)
                .map(|m| info(m, true))
                .collect();
            return Ok((own, Vec::new()));
        };
        let mut own = Vec::new();
        let mut inherited = Vec::new();
        for chain in Self::effective(spec, &all).into_values() {
            let last = chain.len() - 1;
            for (i, m) in chain.into_iter().enumerate() {
                let item = info(m, i == last);
                match m.scope {
                    SecretScope::App => own.push(item),
                    SecretScope::Group => inherited.push(item),
                }
            }
        }
        Ok((own, inherited))
    }

    /// One value, for `reveal` and for comparisons; `NotFound` names it.
    pub async fn value(
        &self,
        scope: SecretScope,
        owner: &str,
        name: &str,
    ) -> Result<Zeroizing<String>, ApiError> {
        // One snapshot for the row and its key: a rotation committing in
        // between would otherwise have dropped the key.
        let mut conn = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT key_id, sealed FROM secrets WHERE scope = ? AND owner = ? AND name = ?",
        )
        .bind(scope.as_str())
        .bind(owner)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(scope, owner, name))?;
        let key = vault::key_by_id(&mut conn, &self.keys, row.get("key_id")).await?;
        Ok(vault::open(
            &key,
            &Identity { scope, owner, name },
            &row.get::<Vec<u8>, _>("sealed"),
        )?)
    }

    /// Every value of the owner, by name.
    async fn values(
        &self,
        conn: &mut sqlx::SqliteConnection,
        scope: SecretScope,
        owner: &str,
    ) -> Result<BTreeMap<String, Zeroizing<String>>, ApiError> {
        let rows = sqlx::query(
            "SELECT name, key_id, sealed FROM secrets WHERE scope = ? AND owner = ? ORDER BY name",
        )
        .bind(scope.as_str())
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = BTreeMap::new();
        let mut keys = vault::KeyCache::default();
        for r in rows {
            let name: String = r.get("name");
            let key = keys.get(conn, &self.keys, r.get("key_id")).await?;
            let value = vault::open(
                key,
                &Identity {
                    scope,
                    owner,
                    name: &name,
                },
                &r.get::<Vec<u8>, _>("sealed"),
            )?;
            out.insert(name, value);
        }
        Ok(out)
    }

    pub async fn export(
        &self,
        scope: SecretScope,
        owner: &str,
    ) -> Result<Zeroizing<String>, ApiError> {
        let mut conn = self.db.begin().await?;
        let values = self.values(&mut conn, scope, owner).await?;
        // render wants plain pairs; they are wiped when dropped.
        let pairs: Vec<(String, String)> = values
            .into_iter()
            .map(|(k, v)| (k, v.as_str().to_string()))
            .collect();
        let text = Zeroizing::new(dotenv::render(&pairs));
        for (_, mut value) in pairs {
            zeroize::Zeroize::zeroize(&mut value);
        }
        Ok(text)
    }

    // ---- writing ---------------------------------------------------------

    /// Sets one value. Two writers of one name serialise on the store's
    /// write lock, so the survivor is one whole value, never a mix.
    pub async fn set(
        &self,
        scope: SecretScope,
        owner: &str,
        name: &str,
        value: &str,
        actor: &str,
    ) -> Result<bool, ApiError> {
        check_secret_name(name).map_err(|m| ApiError::invalid("name", m))?;
        check_secret_value(value).map_err(|m| ApiError::invalid("value", m))?;
        let mut tx = self.db.begin_with("BEGIN IMMEDIATE").await?;
        let created = write(&mut tx, &self.keys, scope, owner, name, value, actor).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn delete(
        &self,
        scope: SecretScope,
        owner: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let gone = sqlx::query("DELETE FROM secrets WHERE scope = ? AND owner = ? AND name = ?")
            .bind(scope.as_str())
            .bind(owner)
            .bind(name)
            .execute(&self.db)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(not_found(scope, owner, name));
        }
        Ok(())
    }

    /// Imports a `.env` text: every line valid or nothing is stored.
    ///
    /// Only a caller who may read values (`precise`) learns which are
    /// unchanged: for anyone else a dry run would otherwise confirm guesses
    /// at a stored value, so every named secret counts as changed and is
    /// written again.
    #[allow(clippy::too_many_arguments)]
    pub async fn import(
        &self,
        scope: SecretScope,
        owner: &str,
        text: &str,
        dry_run: bool,
        replace: bool,
        precise: bool,
        actor: &str,
    ) -> Result<ImportPreview, ApiError> {
        let pairs = dotenv::parse(text).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("line {}: {}", e.line, e.message))
                .collect();
            ApiError::invalid("dotenv", lines.join("; "))
        })?;
        for (name, value) in &pairs {
            check_secret_value(value)
                .map_err(|m| ApiError::invalid("dotenv", format!("{name}: {m}")))?;
        }
        let mut tx = self.db.begin_with("BEGIN IMMEDIATE").await?;
        let existing = self.values(&mut tx, scope, owner).await?;
        let mut preview = ImportPreview {
            added: Vec::new(),
            changed: Vec::new(),
            unchanged: Vec::new(),
            removed: Vec::new(),
            dry_run,
            needs_redeploy: Vec::new(),
            redeploying: Vec::new(),
        };
        let named: BTreeSet<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        for (name, value) in &pairs {
            match existing.get(name) {
                None => preview.added.push(name.clone()),
                Some(old) if precise && old.as_str() == value => {
                    preview.unchanged.push(name.clone())
                }
                Some(_) => preview.changed.push(name.clone()),
            }
        }
        if replace {
            preview.removed = existing
                .keys()
                .filter(|k| !named.contains(k.as_str()))
                .cloned()
                .collect();
        }
        if dry_run {
            return Ok(preview);
        }
        for (name, value) in &pairs {
            if preview.added.contains(name) || preview.changed.contains(name) {
                write(&mut tx, &self.keys, scope, owner, name, value, actor).await?;
            }
        }
        for name in &preview.removed {
            sqlx::query("DELETE FROM secrets WHERE scope = ? AND owner = ? AND name = ?")
                .bind(scope.as_str())
                .bind(owner)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(preview)
    }

    /// An app is gone: so are its own secrets.
    pub async fn forget_app(&self, app: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM secrets WHERE scope = 'app' AND owner = ?")
            .bind(app)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    // ---- groups ----------------------------------------------------------

    pub async fn groups(&self, specs: &[AppSpec]) -> Result<Vec<SecretGroup>, ApiError> {
        let rows = sqlx::query(
            "SELECT g.name, g.description, g.created_at, \
             (SELECT COUNT(*) FROM secrets s WHERE s.scope = 'group' AND s.owner = g.name) AS n \
             FROM secret_groups g ORDER BY g.name",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let name: String = r.get("name");
                SecretGroup {
                    apps: attached(specs, &name),
                    description: r.get("description"),
                    secrets: r.get::<i64, _>("n") as usize,
                    created_at: crate::store::rfc3339(r.get("created_at")),
                    name,
                }
            })
            .collect())
    }

    pub async fn group_exists(&self, name: &str) -> Result<bool, ApiError> {
        Ok(sqlx::query("SELECT 1 FROM secret_groups WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.db)
            .await?
            .is_some())
    }

    pub async fn create_group(&self, name: &str, description: &str) -> Result<(), ApiError> {
        // Named like apps: safe in paths and readable in lists.
        crate::apps::model::check_dns_label("name", name)?;
        if description.len() > 500 || description.contains(['\n', '\0']) {
            return Err(ApiError::invalid(
                "description",
                "one line of at most 500 bytes",
            ));
        }
        let result = sqlx::query(
            "INSERT INTO secret_groups (name, description, created_at) VALUES (?, ?, ?)",
        )
        .bind(name)
        .bind(description)
        .bind(crate::store::now())
        .execute(&self.db)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if crate::store::is_unique_violation(&e) => Err(ApiError::Conflict(format!(
                "a secret group named `{name}` already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a group and its secrets; refused while an app lists it.
    pub async fn delete_group(&self, name: &str) -> Result<(), ApiError> {
        // Who uses it is read in the deleting transaction, so an app
        // attached meanwhile cannot be left pointing at nothing.
        let mut tx = self.db.begin_with("BEGIN IMMEDIATE").await?;
        let specs = sqlx::query_scalar::<_, String>("SELECT spec FROM apps")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|json| serde_json::from_str::<AppSpec>(json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("corrupt app spec")))?;
        let users = attached(&specs, name);
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "secret group `{name}` is used by {}: remove it from their secret_groups first",
                users.join(", ")
            )));
        }
        let gone = sqlx::query("DELETE FROM secret_groups WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(ApiError::NotFound(format!(
                "no secret group named `{name}`"
            )));
        }
        sqlx::query("DELETE FROM secrets WHERE scope = 'group' AND owner = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- keys ------------------------------------------------------------

    pub async fn key_status(&self) -> Result<KeyStatus, ApiError> {
        let row = sqlx::query(
            "SELECT (SELECT id FROM secret_keys ORDER BY id DESC LIMIT 1) AS id, \
             (SELECT created_at FROM secret_keys ORDER BY id DESC LIMIT 1) AS created_at, \
             (SELECT COUNT(*) FROM secrets) AS n",
        )
        .fetch_one(&self.db)
        .await?;
        let recovery = keyring::recovery_created_at(&self.db).await?;
        let (source, path) = match &self.master {
            MasterKeySource::File(p) => ("file", Some(p.display().to_string())),
            MasterKeySource::Environment => ("environment", None),
        };
        Ok(KeyStatus {
            master_source: source.into(),
            master_path: path,
            data_key_id: row.get::<Option<i64>, _>("id").unwrap_or(0),
            data_key_created_at: row
                .get::<Option<i64>, _>("created_at")
                .map(crate::store::rfc3339)
                .unwrap_or_default(),
            secrets: row.get::<i64, _>("n") as usize,
            recovery_configured: recovery.is_some(),
            recovery_created_at: recovery.map(crate::store::rfc3339),
        })
    }

    pub async fn new_recovery_key(&self) -> Result<Zeroizing<String>, ApiError> {
        Ok(Zeroizing::new(
            keyring::new_recovery_key(&self.db, &self.keys).await?,
        ))
    }
}

/// What `rotate_keys` did.
pub struct Rotated {
    pub secrets: usize,
    /// Values re-sealed under a new root (0 without one).
    pub resealed: usize,
    /// Where the new master key is, when one was made.
    pub master: Option<std::path::PathBuf>,
}

/// In one transaction: with `new_root`, a new root key and every sealed
/// value re-sealed under it (berth must not be running: it holds the old
/// root); then a new data key with every secret re-encrypted under it; with
/// `swap`, a new master key. Used by `berth secrets rotate-key`.
pub async fn rotate_keys(
    db: &SqlitePool,
    keys: &Keys,
    source: &MasterKeySource,
    swap: Option<keyring::MasterSwap>,
    new_root: bool,
) -> anyhow::Result<Rotated> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let outcome = async {
        let fresh = new_root.then(|| Keys::from_root(crate::crypto::random_key()));
        let resealed = match &fresh {
            Some(fresh) => reseal::reseal_all(&mut tx, keys, fresh).await?,
            None => 0,
        };
        let keys = fresh.as_ref().unwrap_or(keys);
        let secrets = vault::rotate(&mut tx, keys).await?;
        match &swap {
            Some(swap) => swap.rewrap(&mut tx, keys).await?,
            None if new_root => keyring::rewrap_for_current(&mut tx, source, keys).await?,
            None => {}
        }
        if new_root {
            keyring::rewrap_recovery(&mut tx, keys).await?;
        }
        anyhow::Ok((secrets, resealed))
    }
    .await;
    let committed = match outcome {
        Ok(counts) => tx
            .commit()
            .await
            .map(|_| counts)
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let (secrets, resealed) = match committed {
        Ok(counts) => counts,
        Err(e) => {
            if let Some(swap) = swap {
                swap.abandon();
            }
            return Err(e);
        }
    };
    Ok(Rotated {
        secrets,
        resealed,
        master: swap.map(|s| s.finish()).transpose()?,
    })
}

async fn write(
    conn: &mut sqlx::SqliteConnection,
    keys: &Keys,
    scope: SecretScope,
    owner: &str,
    name: &str,
    value: &str,
    actor: &str,
) -> Result<bool, ApiError> {
    // Checked inside the write's transaction: an owner deleted meanwhile
    // must not leave a secret behind for a later one of the same name.
    let owner_table = match scope {
        SecretScope::App => "SELECT 1 FROM apps WHERE name = ?",
        SecretScope::Group => "SELECT 1 FROM secret_groups WHERE name = ?",
    };
    if sqlx::query(owner_table)
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "{} `{owner}` does not exist",
            match scope {
                SecretScope::App => "app",
                SecretScope::Group => "secret group",
            }
        )));
    }
    let key = vault::active_key(conn, keys).await?;
    let sealed = vault::seal(&key, &Identity { scope, owner, name }, value);
    let now = crate::store::now();
    let existed = sqlx::query("SELECT 1 FROM secrets WHERE scope = ? AND owner = ? AND name = ?")
        .bind(scope.as_str())
        .bind(owner)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    sqlx::query(
        "INSERT INTO secrets (scope, owner, name, key_id, sealed, length, revision, created_at, \
         updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (scope, owner, name) DO UPDATE SET key_id = excluded.key_id, \
         sealed = excluded.sealed, length = excluded.length, revision = excluded.revision, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(scope.as_str())
    .bind(owner)
    .bind(name)
    .bind(key.id)
    .bind(sealed)
    .bind(value.len() as i64)
    .bind(crate::crypto::random_hex(4))
    .bind(now)
    .bind(now)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok(!existed)
}

fn scope_of(s: &str) -> SecretScope {
    match s {
        "group" => SecretScope::Group,
        _ => SecretScope::App,
    }
}

fn not_found(scope: SecretScope, owner: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "{} `{owner}` has no secret named {name}",
        match scope {
            SecretScope::App => "app",
            SecretScope::Group => "secret group",
        }
    ))
}

/// Apps that list `group` in `secret_groups`.
pub fn attached(specs: &[AppSpec], group: &str) -> Vec<String> {
    specs
        .iter()
        .filter(|s| s.secret_groups.iter().any(|g| g == group))
        .map(|s| s.name.clone())
        .collect()
}

/// What changed between two stamps, by name, for plans and badges.
pub fn stamp_changes(old: &str, new: &str) -> Vec<String> {
    let parse = |s: &str| -> BTreeMap<String, String> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('@'))
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect()
    };
    let (old, new) = (parse(old), parse(new));
    let mut parts = Vec::new();
    let added: Vec<&str> = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .map(|k| k.as_str())
        .collect();
    let removed: Vec<&str> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| k.as_str())
        .collect();
    let updated: Vec<&str> = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    if !updated.is_empty() {
        parts.push(format!("updated {}", updated.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_name_added_updated_and_removed_secrets() {
        assert!(stamp_changes("A@1,B@2", "A@1,B@2").is_empty());
        assert_eq!(
            stamp_changes("A@1,B@2,C@3", "A@1,B@9,D@4"),
            vec!["added D", "updated B", "removed C"]
        );
        assert_eq!(stamp_changes("", "X@1"), vec!["added X"]);
    }

    #[test]
    fn groups_are_named_like_dns_labels() {
        assert!(crate::apps::model::check_dns_label("name", "shared-db").is_ok());
        for bad in [
            "",
            "Shared",
            "a_b",
            "-a",
            "a-",
            "a/b",
            "a;b",
            &"x".repeat(64),
        ] {
            assert!(
                crate::apps::model::check_dns_label("name", bad).is_err(),
                "{bad}"
            );
        }
    }
}
