-- Virtual machines: configuration and placement (desired state). What actually runs is
-- reported by the nodes with every heartbeat.
CREATE TABLE vms (
    vmid        INTEGER PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    node        TEXT NOT NULL,
    cores       INTEGER NOT NULL,
    memory_mib  INTEGER NOT NULL,
    image       TEXT NOT NULL,
    args        TEXT,
    description TEXT NOT NULL DEFAULT '',
    onboot      INTEGER NOT NULL DEFAULT 0,
    desired     TEXT NOT NULL DEFAULT 'stopped',   -- running | stopped: what the last action asked for
    created_at  INTEGER NOT NULL
);
CREATE INDEX vms_by_node ON vms (node);
