//! Secret values at rest: each value is sealed with XChaCha20-Poly1305
//! under a data key, with its own random nonce, and with its identity
//! (scope, owner, name, data key id) as associated data, so a ciphertext
//! copied onto another row does not open. Data keys are sealed by a
//! root-derived key and carry an id; rotation adds a key and re-encrypts.

use anyhow::Context;
use app::api::SecretScope;
use sqlx::{Row, SqliteConnection};
use zeroize::Zeroizing;

use crate::crypto::{self, Keys};

const DATA_KEY_PURPOSE: &str = "berth secret data-key v1";

pub struct DataKey {
    pub id: i64,
    key: Zeroizing<[u8; 32]>,
}

/// What a value is bound to.
pub struct Identity<'a> {
    pub scope: SecretScope,
    pub owner: &'a str,
    pub name: &'a str,
}

impl Identity<'_> {
    fn bound(&self, key_id: i64) -> Vec<u8> {
        format!(
            "berth/secret/v1\0{}\0{}\0{}\0{key_id}",
            self.scope.as_str(),
            self.owner,
            self.name
        )
        .into_bytes()
    }
}

fn open_data_key(keys: &Keys, id: i64, wrapped: &[u8]) -> anyhow::Result<DataKey> {
    let plain = Zeroizing::new(
        keys.open_bound(DATA_KEY_PURPOSE, id.to_string().as_bytes(), wrapped)
            .with_context(|| format!("secret data key {id} does not open"))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        anyhow::bail!("secret data key {id} has the wrong length");
    }
    key.copy_from_slice(&plain);
    Ok(DataKey { id, key })
}

/// The data key new values are sealed with (the newest), made on first use.
/// Call inside the transaction that writes the value.
pub async fn active_key(conn: &mut SqliteConnection, keys: &Keys) -> anyhow::Result<DataKey> {
    let row = sqlx::query("SELECT id, wrapped FROM secret_keys ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => open_data_key(keys, r.get("id"), &r.get::<Vec<u8>, _>("wrapped")),
        None => new_key(conn, keys).await,
    }
}

/// Adds a data key; it becomes the active one.
pub async fn new_key(conn: &mut SqliteConnection, keys: &Keys) -> anyhow::Result<DataKey> {
    let key = Zeroizing::new(crypto::random_key());
    // The id is part of the wrap's identity, so reserve it first.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO secret_keys (wrapped, created_at) VALUES (x'', ?) RETURNING id",
    )
    .bind(crate::store::now())
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE secret_keys SET wrapped = ? WHERE id = ?")
        .bind(keys.seal_bound(DATA_KEY_PURPOSE, id.to_string().as_bytes(), &key[..]))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(DataKey { id, key })
}

/// Seals every data key again, from root `old` to root `new`.
pub async fn rewrap_data_keys(
    conn: &mut SqliteConnection,
    old: &Keys,
    new: &Keys,
) -> anyhow::Result<usize> {
    let rows = sqlx::query("SELECT id, wrapped FROM secret_keys")
        .fetch_all(&mut *conn)
        .await?;
    for r in &rows {
        let id: i64 = r.get("id");
        let key = open_data_key(old, id, &r.get::<Vec<u8>, _>("wrapped"))?;
        sqlx::query("UPDATE secret_keys SET wrapped = ? WHERE id = ?")
            .bind(new.seal_bound(DATA_KEY_PURPOSE, id.to_string().as_bytes(), &key.key[..]))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows.len())
}

pub async fn key_by_id(
    conn: &mut SqliteConnection,
    keys: &Keys,
    id: i64,
) -> anyhow::Result<DataKey> {
    let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM secret_keys WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .with_context(|| format!("secret data key {id} is missing"))?;
    open_data_key(keys, id, &wrapped)
}

/// Data keys opened so far, so reading many values opens each key once.
#[derive(Default)]
pub struct KeyCache(std::collections::HashMap<i64, DataKey>);

impl KeyCache {
    pub async fn get(
        &mut self,
        conn: &mut SqliteConnection,
        keys: &Keys,
        id: i64,
    ) -> anyhow::Result<&DataKey> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(id) {
            slot.insert(key_by_id(conn, keys, id).await?);
        }
        Ok(&self.0[&id])
    }
}

pub fn seal(key: &DataKey, who: &Identity, value: &str) -> Vec<u8> {
    crypto::seal_with(&key.key, &who.bound(key.id), value.as_bytes())
}

/// Opens a value; an altered or moved ciphertext is an error that names
/// the secret, never its content.
pub fn open(key: &DataKey, who: &Identity, sealed: &[u8]) -> anyhow::Result<Zeroizing<String>> {
    let plain = crypto::open_with(&key.key, &who.bound(key.id), sealed).map_err(|_| {
        anyhow::anyhow!(
            "secret {} of {} `{}` does not open: it was altered or does not belong there",
            who.name,
            who.scope.as_str(),
            who.owner
        )
    })?;
    String::from_utf8(plain)
        .map(Zeroizing::new)
        .map_err(|_| anyhow::anyhow!("secret {} is not UTF-8", who.name))
}

/// Re-encrypts every value under a new data key and drops the old keys, in
/// the caller's transaction. Returns how many values were re-encrypted.
pub async fn rotate(conn: &mut SqliteConnection, keys: &Keys) -> anyhow::Result<usize> {
    let fresh = new_key(conn, keys).await?;
    let rows = sqlx::query("SELECT scope, owner, name, key_id, sealed FROM secrets")
        .fetch_all(&mut *conn)
        .await?;
    let mut old = KeyCache::default();
    for r in &rows {
        let scope = match r.get::<String, _>("scope").as_str() {
            "app" => SecretScope::App,
            _ => SecretScope::Group,
        };
        let (owner, name): (String, String) = (r.get("owner"), r.get("name"));
        let who = Identity {
            scope,
            owner: &owner,
            name: &name,
        };
        let key = old.get(conn, keys, r.get("key_id")).await?;
        let value = open(key, &who, &r.get::<Vec<u8>, _>("sealed"))?;
        sqlx::query(
            "UPDATE secrets SET key_id = ?, sealed = ? WHERE scope = ? AND owner = ? AND name = ?",
        )
        .bind(fresh.id)
        .bind(seal(&fresh, &who, &value))
        .bind(scope.as_str())
        .bind(&owner)
        .bind(&name)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM secret_keys WHERE id <> ?")
        .bind(fresh.id)
        .execute(&mut *conn)
        .await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64, byte: u8) -> DataKey {
        DataKey {
            id,
            key: Zeroizing::new([byte; 32]),
        }
    }

    fn who<'a>(owner: &'a str, name: &'a str) -> Identity<'a> {
        Identity {
            scope: SecretScope::App,
            owner,
            name,
        }
    }

    #[test]
    fn values_open_under_their_own_identity_and_key_only() {
        let k = key(1, 3);
        let sealed = seal(&k, &who("web", "DB_PASSWORD"), "hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            open(&k, &who("web", "DB_PASSWORD"), &sealed)
                .unwrap()
                .as_str(),
            "hunter2"
        );
        // Swapped onto another secret, another app, or a group of the same name.
        assert!(open(&k, &who("web", "API_KEY"), &sealed).is_err());
        assert!(open(&k, &who("api", "DB_PASSWORD"), &sealed).is_err());
        let group = Identity {
            scope: SecretScope::Group,
            owner: "web",
            name: "DB_PASSWORD",
        };
        assert!(open(&k, &group, &sealed).is_err());
        // Under another key, or the same bytes claiming another key id.
        assert!(open(&key(1, 4), &who("web", "DB_PASSWORD"), &sealed).is_err());
        assert!(open(&key(2, 3), &who("web", "DB_PASSWORD"), &sealed).is_err());
        // Any flipped bit.
        for i in [0, 24, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&k, &who("web", "DB_PASSWORD"), &bad).is_err());
        }
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(sealed, seal(&k, &who("web", "DB_PASSWORD"), "hunter2"));
    }

    #[test]
    fn errors_name_the_secret_and_never_the_value() {
        let k = key(1, 3);
        let sealed = seal(&k, &who("web", "TOKEN"), "canary-value");
        let e = open(&k, &who("web", "OTHER"), &sealed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTHER") && !e.contains("canary"), "{e}");
    }
}
