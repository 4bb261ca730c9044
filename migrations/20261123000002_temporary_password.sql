-- A password set by `berth admin reset-password` is for one login only: until
-- the admin chooses a new one, their session may do nothing else.
ALTER TABLE admin ADD COLUMN password_must_change INTEGER NOT NULL DEFAULT 0
    CHECK (password_must_change IN (0, 1));
