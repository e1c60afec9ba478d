-- The access model (issue 6): groups, custom roles, ACL entries, API tokens, pools with quotas.
-- Users already exist (20261129000001_init.sql). Built-in roles live in the code, not here.
-- Portable SQL (SQLite now; PostgreSQL later).

CREATE TABLE user_groups (
    groupid    TEXT PRIMARY KEY NOT NULL,
    comment    TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
    groupid TEXT NOT NULL REFERENCES user_groups (groupid) ON DELETE CASCADE,
    userid  TEXT NOT NULL REFERENCES users (userid) ON DELETE CASCADE,
    PRIMARY KEY (groupid, userid)
);

-- Custom roles: privileges as a comma-separated list of Proxmox names.
CREATE TABLE roles (
    roleid TEXT PRIMARY KEY NOT NULL,
    privs  TEXT NOT NULL
);

-- ACL entries. ugid is a user id, a group id or a full token id (user@kiln!token).
CREATE TABLE acl (
    path      TEXT NOT NULL,
    ugid_type TEXT NOT NULL CHECK (ugid_type IN ('user', 'group', 'token')),
    ugid      TEXT NOT NULL,
    roleid    TEXT NOT NULL,
    propagate INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (path, ugid_type, ugid, roleid)
);

-- API tokens; the secret is shown once and stored as its SHA-256.
CREATE TABLE api_tokens (
    userid        TEXT NOT NULL REFERENCES users (userid) ON DELETE CASCADE,
    tokenid       TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    privsep       INTEGER NOT NULL DEFAULT 1,
    expire        INTEGER NOT NULL DEFAULT 0,     -- unix seconds; 0 = never
    comment       TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (userid, tokenid)
);

-- Pools; a NULL limit means none.
CREATE TABLE pools (
    poolid         TEXT PRIMARY KEY NOT NULL,
    comment        TEXT NOT NULL DEFAULT '',
    max_vms        INTEGER,
    max_vcpus      INTEGER,                     -- vCPUs of the pool's running VMs
    max_memory_mib INTEGER,                     -- memory of the pool's running VMs
    created_at     INTEGER NOT NULL
);

-- A VM belongs to at most one pool. No foreign key to vms: removing a VM removes its
-- membership explicitly (together with its ACL entries).
CREATE TABLE pool_members (
    vmid   INTEGER PRIMARY KEY NOT NULL,
    poolid TEXT NOT NULL REFERENCES pools (poolid)
);
CREATE INDEX pool_members_by_pool ON pool_members (poolid);

-- Audit log: every state-changing API call that reached the API (who, what, result, from
-- where). No bodies or query strings are kept, so no secrets end up here.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time    INTEGER NOT NULL,                   -- unix seconds
    userid  TEXT NOT NULL,                      -- auth id (user@kiln or user@kiln!token), or '' if none
    method  TEXT NOT NULL,
    path    TEXT NOT NULL,
    status  INTEGER NOT NULL,                   -- HTTP status of the answer
    client  TEXT NOT NULL                       -- client address
);
CREATE INDEX audit_log_by_time ON audit_log (time DESC);

-- Second factors: at most one TOTP ('totp': its otpauth URL, and the last accepted time
-- step so that a code is never accepted twice) and one set of recovery keys ('recovery':
-- comma-separated SHA-256 of the keys not used yet) per user.
CREATE TABLE user_tfa (
    userid     TEXT NOT NULL REFERENCES users (userid) ON DELETE CASCADE,
    id         TEXT NOT NULL CHECK (id IN ('totp', 'recovery')),
    data       TEXT NOT NULL,
    last_step  INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (userid, id)
);
