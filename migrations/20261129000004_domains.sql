-- Domains routed by the reverse proxy. The spec is the DomainSpec as JSON
-- with basic-auth passwords removed; their argon2id hashes live in
-- `auth_hashes` (JSON object username → PHC string) and are never returned.
CREATE TABLE domains (
    host        TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,
    auth_hashes TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
