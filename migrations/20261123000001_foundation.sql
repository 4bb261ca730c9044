-- Foundation schema: the single administrator, API tokens, panel settings and
-- the audit log. Applied migrations are never edited; add a new file instead.
-- Timestamps are unix seconds (INTEGER) so that comparisons stay in SQL.

-- `id` is pinned to 1: the database itself guarantees that there is never a
-- second administrator, even when several setup requests race each other.
CREATE TABLE admin (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- Bumped whenever the password is changed or reset: a browser session
    -- remembers the generation it was created under and dies when it differs.
    session_generation INTEGER NOT NULL DEFAULT 0,
    -- TOTP secrets are sealed with master.key (see crypto.rs), never stored raw.
    totp_secret BLOB,
    totp_pending BLOB,
    -- Last accepted TOTP time step: a code is accepted at most once.
    totp_last_step INTEGER,
    created_at INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL
) STRICT;

-- One-time recovery codes for a lost second factor; only their SHA-256 is kept.
CREATE TABLE recovery_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    used_at INTEGER
) STRICT;

-- Panel-wide settings stored by the setup wizard (panel domain, ACME e-mail).
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

-- API tokens are JWTs; the row is what makes revocation immediate. The token
-- itself is never stored: only its id (the JWT's `jti`).
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- comma-separated subset of read,write,admin
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_used_at INTEGER
) STRICT;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    client_ip TEXT,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    -- Free-form JSON for context. Callers must never put a secret here.
    detail TEXT
) STRICT;
