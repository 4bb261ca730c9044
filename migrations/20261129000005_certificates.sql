-- Certificates (ACME-issued and uploaded), the ACME account, DNS providers
-- for DNS-01, what the HTTPS listener was last seen serving, and the
-- notification channels. Every secret column holds a value sealed with
-- master.key (XChaCha20-Poly1305); none is ever returned by the API.

-- One row (id = 1): the ACME CA and the account registered with it.
CREATE TABLE acme_account (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    directory_url    TEXT NOT NULL,
    email            TEXT,
    eab_kid          TEXT,
    eab_hmac_sealed  BLOB,
    extra_roots_pem  TEXT,
    -- instant-acme's AccountCredentials (JSON, holds the account key), sealed.
    credentials_sealed BLOB,
    -- The directory + e-mail the credentials were registered for.
    registered_for   TEXT,
    account_id       TEXT,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE certificates (
    id             TEXT PRIMARY KEY NOT NULL,
    -- JSON array of names, subject first.
    domains        TEXT NOT NULL,
    source         TEXT NOT NULL CHECK (source IN ('acme', 'upload')),
    challenge      TEXT,
    dns_provider   TEXT,
    key_type       TEXT,
    state          TEXT NOT NULL,
    chain_pem      TEXT,
    key_sealed     BLOB,
    issuer         TEXT,
    serial         TEXT,
    not_before     INTEGER,
    not_after      INTEGER,
    fingerprint    TEXT,
    -- ARI certificate identifier (base64url AKI "." base64url serial).
    ari_id         TEXT,
    renew_at       INTEGER,
    renew_reason   TEXT,
    -- When to next ask the CA for renewal information.
    ari_check_at   INTEGER,
    -- Failed attempts in a row, and when the next may start.
    failures       INTEGER NOT NULL DEFAULT 0,
    retry_at       INTEGER,
    last_attempt_at INTEGER,
    last_error     TEXT,
    -- Ordered by berth for a domain (auto_certificate) or the panel domain.
    automatic      INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Steps of the latest attempt per certificate (replaced at each attempt).
CREATE TABLE certificate_steps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    certificate_id TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    at             INTEGER NOT NULL,
    step           TEXT NOT NULL,
    status         TEXT NOT NULL,
    detail         TEXT
);
CREATE INDEX certificate_steps_by_cert ON certificate_steps (certificate_id, id);

CREATE TABLE dns_providers (
    name           TEXT PRIMARY KEY NOT NULL,
    config         TEXT NOT NULL,
    secret_sealed  BLOB NOT NULL,
    allow_internal INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

-- The expiry probe's last reading per HTTPS host.
CREATE TABLE certificate_probes (
    host               TEXT PRIMARY KEY NOT NULL,
    checked_at         INTEGER NOT NULL,
    served_fingerprint TEXT,
    served_not_after   INTEGER,
    expected_certificate TEXT,
    status             TEXT NOT NULL,
    detail             TEXT,
    -- The status a notification was last sent for, so each problem is
    -- announced once, not at every probe.
    notified_status    TEXT
);

CREATE TABLE notification_channels (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    config         TEXT NOT NULL,
    secret_sealed  BLOB,
    allow_internal INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    last_sent_at   INTEGER,
    last_error     TEXT
);
