-- Apps: the desired state of one container each. The engine holds what
-- exists; this table holds what should exist and what happened last.
CREATE TABLE apps (
    name         TEXT PRIMARY KEY NOT NULL,
    -- The AppSpec as JSON (never with a password in it).
    spec         TEXT NOT NULL,
    -- config_hash(spec): stamped on the container as a label.
    spec_hash    TEXT NOT NULL,
    -- The spec of the last successful apply, to explain later changes.
    applied_spec TEXT,
    -- Set while an apply runs; an apply cut off by a crash is resumed at start-up.
    applying     INTEGER NOT NULL DEFAULT 0,
    -- The last ApplyResult as JSON.
    last_apply   TEXT,
    stack        TEXT REFERENCES stacks (name),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE stacks (
    name       TEXT PRIMARY KEY NOT NULL,
    -- The compose file as the admin gave it.
    compose    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX apps_stack ON apps (stack);
