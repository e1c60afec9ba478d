-- High availability: resources (what the administrator asks for), rules (where they may run)
-- and the HA manager's own state per resource (so a server restart resumes a recovery).

-- An HA resource: a VM the cluster keeps in its requested state.
CREATE TABLE ha_resources (
    sid          TEXT PRIMARY KEY NOT NULL,          -- vm:<vmid>
    vmid         INTEGER NOT NULL UNIQUE,
    state        TEXT NOT NULL DEFAULT 'started',    -- requested: started | stopped | disabled | ignored
    max_restart  INTEGER NOT NULL DEFAULT 1,         -- restarts on the same node after a crash
    max_relocate INTEGER NOT NULL DEFAULT 1,         -- moves to another node once restarts are used up
    failback     INTEGER NOT NULL DEFAULT 1,         -- move back to a higher-priority node when it returns
    comment      TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
);

-- HA rules as in Proxmox VE 9: node affinity and resource affinity.
CREATE TABLE ha_rules (
    rule       TEXT PRIMARY KEY NOT NULL,
    type       TEXT NOT NULL,                        -- node-affinity | resource-affinity
    resources  TEXT NOT NULL,                        -- comma-separated sids
    nodes      TEXT NOT NULL DEFAULT '',             -- node-affinity: node[:priority],...
    strict     INTEGER NOT NULL DEFAULT 0,           -- node-affinity: only these nodes
    affinity   TEXT NOT NULL DEFAULT '',             -- resource-affinity: positive (together) | negative (apart)
    disable    INTEGER NOT NULL DEFAULT 0,
    comment    TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

-- The HA manager's state machine per resource (server/src/ha/state.rs).
CREATE TABLE ha_service_state (
    sid        TEXT PRIMARY KEY NOT NULL,
    state      TEXT NOT NULL,                        -- started | request_stop | stopped | fence | recovery | migrate | relocate | error | disabled | ignored
    node       TEXT NOT NULL,                        -- node that owns the resource
    target     TEXT,                                 -- migrate / relocate / recovery target
    restarts   INTEGER NOT NULL DEFAULT 0,           -- restarts since it last ran stably
    relocates  INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,                                 -- why it is where it is (error, waiting for a node)
    updated_at INTEGER NOT NULL
);

-- Nodes in maintenance: HA moves its resources away and places nothing there.
CREATE TABLE ha_node_maintenance (
    node  TEXT PRIMARY KEY NOT NULL,
    since INTEGER NOT NULL
);
