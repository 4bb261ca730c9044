-- Backups: the encryption keys, the jobs, every run, restore and drill.

-- age X25519 keys. The newest encrypts new archives; every one stays to
-- open older archives. The identity is sealed with the master key.
CREATE TABLE backup_keys (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    identity_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE backup_jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- Source and Target JSON with every secret removed; the secrets are in
    -- `secrets_sealed` (JSON, sealed for this job's id).
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    secrets_sealed BLOB,
    schedule TEXT,
    timezone TEXT NOT NULL,
    retention TEXT NOT NULL,
    compression_level INTEGER NOT NULL,
    encrypt INTEGER NOT NULL,
    drill TEXT,
    enabled INTEGER NOT NULL,
    -- Scheduled starts up to this time (unix seconds) were handled: run,
    -- or skipped because a run was going. A start missed while berth was
    -- down is one after this and before now.
    scheduled_through INTEGER NOT NULL,
    drill_through INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE backup_runs (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES backup_jobs(id) ON DELETE CASCADE,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    source_bytes INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    object TEXT,
    -- Where the archive went (`local directory …`, `sftp://…`, `s3 …`):
    -- retention, restores and drills use only archives at the job's
    -- current target.
    target TEXT NOT NULL,
    encrypted INTEGER NOT NULL,
    error TEXT,
    log TEXT NOT NULL DEFAULT '[]',
    verified INTEGER NOT NULL DEFAULT 0,
    pruned_at INTEGER,
    manifest TEXT
);
CREATE INDEX backup_runs_job ON backup_runs (job_id, started_at);
-- One run per job at a time, even under concurrent requests.
CREATE UNIQUE INDEX backup_runs_one_running ON backup_runs (job_id) WHERE status = 'running';

CREATE TABLE backup_restores (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES backup_runs(id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    destination TEXT NOT NULL,
    -- What a restore to something new created (`database:NAME`,
    -- `volume:NAME`, `directory:PATH`), removed if it fails or berth dies
    -- during it.
    created TEXT,
    actor TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    log TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE backup_drills (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES backup_jobs(id) ON DELETE CASCADE,
    run_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed')),
    -- The scratch database or volume, dropped afterwards (and at start-up
    -- if berth died in between).
    scratch TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    checks TEXT NOT NULL DEFAULT '[]',
    error TEXT
);
CREATE INDEX backup_drills_job ON backup_drills (job_id, started_at);
CREATE UNIQUE INDEX backup_drills_one_running ON backup_drills (job_id) WHERE status = 'running';
