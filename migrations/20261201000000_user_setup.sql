-- Per-user login requirements (issue 6): a second factor the user must have, and a password
-- the user must replace (one-time passwords of a lab roster, or set by an administrator).
-- Until both are met, a session of the user may only do what meets them.
ALTER TABLE users ADD COLUMN tfa_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
