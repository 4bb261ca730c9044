-- Environment secrets and the key ring under them.

-- The root key every sealed value derives from, wrapped by the master key
-- (so the master key can be replaced or recovered without re-sealing), and
-- again for the recovery key's public half (an age X25519 recipient).
CREATE TABLE key_ring (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped BLOB NOT NULL,
    recovery_recipient TEXT,
    recovery_wrapped BLOB,
    recovery_created_at INTEGER,
    master_changed_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Data keys for secret values, sealed by a root-derived key. The newest
-- seals new values; `berth secrets rotate-key` adds one, re-encrypts every
-- value under it and drops the others.
CREATE TABLE secret_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE secret_groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

-- One value per (scope, owner, name). The ciphertext is bound to that
-- identity and to key_id as associated data. `revision` changes on every
-- set; containers carry the revisions they were created with, which is how
-- berth knows who needs a redeploy without decrypting anything.
CREATE TABLE secrets (
    scope TEXT NOT NULL CHECK (scope IN ('app', 'group')),
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    key_id INTEGER NOT NULL REFERENCES secret_keys(id),
    sealed BLOB NOT NULL,
    length INTEGER NOT NULL,
    revision TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (scope, owner, name)
);
CREATE INDEX secrets_key ON secrets (key_id);
