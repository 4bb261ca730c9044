-- The host firewall: the rules the admin wants, what is live in the kernel,
-- and every apply with its confirmation window.

-- One row. `desired` is the FirewallConfig JSON being edited; `applied` is
-- the one confirmed live (NULL: berth has never loaded a table), which an
-- unconfirmed apply rolls back to and start-up loads again.
CREATE TABLE firewall_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    desired TEXT NOT NULL,
    revision INTEGER NOT NULL,
    applied TEXT,
    applied_revision INTEGER,
    -- Digest of berth's table as nft listed it after the last load, to
    -- notice a table removed or edited behind berth's back.
    fingerprint TEXT,
    updated_at INTEGER NOT NULL
);

CREATE TABLE firewall_applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    revision INTEGER NOT NULL,
    config TEXT NOT NULL,
    -- What was live before (JSON FirewallConfig; NULL: no table), restored
    -- unless the apply is confirmed by `deadline` (unix seconds).
    previous TEXT,
    previous_revision INTEGER,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'rolled_back', 'failed')),
    actor TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    finished_at INTEGER,
    message TEXT
);

-- At most one apply waits for confirmation.
CREATE UNIQUE INDEX firewall_one_pending ON firewall_applies (state) WHERE state = 'pending';
