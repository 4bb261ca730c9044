//! A new root key: every value sealed under the old root is opened and
//! sealed again under the new one, in the caller's transaction. This is what
//! undoes a leaked master key together with a copy of the database (a new
//! master key alone only re-wraps the same root).
//!
//! Every sealed column is listed in `SEALED`; a test checks the schema has
//! no sealed column this list misses.

use anyhow::Context;
use sqlx::{Row, SqliteConnection};

use crate::crypto::Keys;

/// A column of values sealed with `Keys::seal(purpose(key), …)`.
struct SealedColumn {
    table: &'static str,
    /// The row's key, as text, is what `purpose` is made from.
    key: &'static str,
    column: &'static str,
    purpose: fn(&str) -> String,
}

const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "admin",
        key: "id",
        column: "totp_secret",
        purpose: |_| crate::auth::totp::SEAL_PURPOSE.to_string(),
    },
    SealedColumn {
        table: "admin",
        key: "id",
        column: "totp_pending",
        purpose: |_| crate::auth::totp::SEAL_PURPOSE.to_string(),
    },
    SealedColumn {
        table: "acme_account",
        key: "id",
        column: "eab_hmac_sealed",
        purpose: |_| crate::certificates::account::EAB_PURPOSE.to_string(),
    },
    SealedColumn {
        table: "acme_account",
        key: "id",
        column: "credentials_sealed",
        purpose: |_| crate::certificates::account::CREDENTIALS_PURPOSE.to_string(),
    },
    SealedColumn {
        table: "certificates",
        key: "id",
        column: "key_sealed",
        purpose: crate::certificates::key_purpose,
    },
    SealedColumn {
        table: "dns_providers",
        key: "name",
        column: "secret_sealed",
        purpose: crate::certificates::dns::purpose,
    },
    SealedColumn {
        table: "notification_channels",
        key: "id",
        column: "secret_sealed",
        purpose: crate::notify::purpose,
    },
    SealedColumn {
        table: "backup_jobs",
        key: "id",
        column: "secrets_sealed",
        purpose: crate::backups::jobs::purpose,
    },
    SealedColumn {
        table: "backup_keys",
        key: "id",
        column: "identity_sealed",
        purpose: crate::backups::keys::purpose,
    },
];

/// Re-seals every listed column and every secret data key from `old` to
/// `new`. Returns how many column values moved.
pub async fn reseal_all(
    conn: &mut SqliteConnection,
    old: &Keys,
    new: &Keys,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    for c in SEALED {
        let rows = sqlx::query(&format!(
            "SELECT rowid AS rid, CAST({key} AS TEXT) AS k, {col} AS v FROM {table} WHERE {col} IS NOT NULL",
            key = c.key,
            col = c.column,
            table = c.table
        ))
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let key: String = r.get("k");
            let purpose = (c.purpose)(&key);
            let plain = zeroize::Zeroizing::new(
                old.open(&purpose, &r.get::<Vec<u8>, _>("v"))
                    .with_context(|| format!("{}.{} of `{key}`", c.table, c.column))?,
            );
            sqlx::query(&format!(
                "UPDATE {table} SET {col} = ? WHERE rowid = ?",
                table = c.table,
                col = c.column
            ))
            .bind(new.seal(&purpose, &plain))
            .bind(r.get::<i64, _>("rid"))
            .execute(&mut *conn)
            .await?;
            moved += 1;
        }
    }
    // The secrets' data keys move too (their values need not: they are
    // sealed under the data keys, which do not change here).
    super::vault::rewrap_data_keys(conn, old, new).await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed column added later must be added to `SEALED`, or a root
    /// rotation would leave it unreadable.
    #[tokio::test]
    async fn every_sealed_column_of_the_schema_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("berth.db"))
            .await
            .unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&db)
                .await
                .unwrap();
        // Sealed elsewhere: data keys (rewrap_data_keys), secret values
        // (under data keys), the key ring (under the master key).
        let handled_elsewhere = [
            ("secret_keys", "wrapped"),
            ("secrets", "sealed"),
            ("key_ring", "wrapped"),
            ("key_ring", "recovery_wrapped"),
        ];
        let mut found = Vec::new();
        for table in tables {
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
                .fetch_all(&db)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
            for column in columns {
                let sealed = column.contains("sealed")
                    || column.contains("wrapped")
                    || column.starts_with("totp_secret")
                    || column.starts_with("totp_pending");
                if sealed && !handled_elsewhere.contains(&(table.as_str(), column.as_str())) {
                    found.push((table.clone(), column));
                }
            }
        }
        let listed: Vec<(String, String)> = SEALED
            .iter()
            .map(|c| (c.table.to_string(), c.column.to_string()))
            .collect();
        for f in &found {
            assert!(listed.contains(f), "{f:?} is sealed but not in SEALED");
        }
        assert_eq!(found.len(), listed.len(), "{found:?}");
    }
}
