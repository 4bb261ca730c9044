//! The backup encryption keys: age X25519. The newest key's recipient
//! encrypts new archives. Every identity stays (sealed with the master key)
//! so berth can restore and drill older archives; the admin is shown each
//! identity once, to keep off the host for the day the host is gone.

use age::secrecy::ExposeSecret;
use sqlx::{Row, SqlitePool};

use crate::crypto::Keys;

pub(crate) fn purpose(id: &str) -> String {
    format!("backup-key:{id}")
}

pub struct NewKey {
    pub recipient: String,
    pub identity: String,
    pub created_at: i64,
}

/// Makes a key and stores it as the newest.
pub async fn generate(db: &SqlitePool, keys: &Keys) -> anyhow::Result<NewKey> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let sealed = keys.seal(&purpose(&id), secret.expose_secret().as_bytes());
    let now = crate::store::now();
    sqlx::query(
        "INSERT INTO backup_keys (id, recipient, identity_sealed, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&recipient)
    .bind(sealed)
    .bind(now)
    .execute(db)
    .await?;
    Ok(NewKey {
        recipient,
        identity: secret.expose_secret().to_string(),
        created_at: now,
    })
}

/// The newest key's recipient and when it was made.
pub async fn current(db: &SqlitePool) -> anyhow::Result<Option<(age::x25519::Recipient, i64)>> {
    let row = sqlx::query("SELECT recipient, created_at FROM backup_keys ORDER BY created_at DESC, rowid DESC LIMIT 1")
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.get("recipient");
    let recipient = text
        .parse()
        .map_err(|e| anyhow::anyhow!("the stored backup recipient is unreadable: {e}"))?;
    Ok(Some((recipient, row.get("created_at"))))
}

/// Every identity, newest first.
pub async fn identities(
    db: &SqlitePool,
    keys: &Keys,
) -> anyhow::Result<Vec<age::x25519::Identity>> {
    let rows = sqlx::query(
        "SELECT id, identity_sealed FROM backup_keys ORDER BY created_at DESC, rowid DESC",
    )
    .fetch_all(db)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let id: String = row.get("id");
        let sealed: Vec<u8> = row.get("identity_sealed");
        let plain = keys.open(&purpose(&id), &sealed)?;
        let text = String::from_utf8(plain)?;
        let identity = text
            .parse()
            .map_err(|e| anyhow::anyhow!("backup key {id} is unreadable: {e}"))?;
        out.push(identity);
    }
    Ok(out)
}
