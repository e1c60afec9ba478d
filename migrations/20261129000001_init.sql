-- Kiln's initial schema: users, sessions, nodes, join tokens, tasks, cluster config.
-- Portable SQL (SQLite now; PostgreSQL later): INTEGER unix seconds, TEXT ids, no JSON columns.

CREATE TABLE users (
    userid        TEXT PRIMARY KEY NOT NULL,          -- name@realm, e.g. root@kiln
    password_hash TEXT NOT NULL,                      -- argon2id PHC string
    enabled       INTEGER NOT NULL DEFAULT 1,
    expire        INTEGER NOT NULL DEFAULT 0,         -- unix seconds; 0 = never
    firstname     TEXT NOT NULL DEFAULT '',
    lastname      TEXT NOT NULL DEFAULT '',
    email         TEXT NOT NULL DEFAULT '',
    comment       TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);

-- tower-sessions' table (the same DDL its SqliteStore::migrate would run).
CREATE TABLE IF NOT EXISTS tower_sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    data        BLOB NOT NULL,
    expiry_date INTEGER NOT NULL
);

CREATE TABLE nodes (
    nodeid           INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    api_url          TEXT NOT NULL,
    cert_fingerprint TEXT NOT NULL,                  -- sha256 of the node certificate, hex
    joined_at        INTEGER NOT NULL
);

CREATE TABLE join_tokens (
    id            TEXT PRIMARY KEY NOT NULL,         -- 16 hex digits, public part of the token
    secret_sha256 TEXT NOT NULL,                     -- hex sha256 of the secret part
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    used_by_node  TEXT
);

CREATE TABLE tasks (
    upid      TEXT PRIMARY KEY NOT NULL,
    node      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    pstart    INTEGER NOT NULL,
    starttime INTEGER NOT NULL,
    type      TEXT NOT NULL,
    id        TEXT NOT NULL,
    userid    TEXT NOT NULL,
    status    TEXT NOT NULL,                         -- running | stopped
    exitstatus TEXT,                                 -- OK or the error, once stopped
    endtime   INTEGER
);
CREATE INDEX tasks_by_start ON tasks (starttime DESC);
CREATE INDEX tasks_by_node ON tasks (node, starttime DESC);

CREATE TABLE task_log (
    upid TEXT NOT NULL REFERENCES tasks (upid) ON DELETE CASCADE,
    n    INTEGER NOT NULL,
    t    TEXT NOT NULL,
    PRIMARY KEY (upid, n)
);

CREATE TABLE cluster_config (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
