-- Teaching labs (issue 6). A lab lives in the pool of the same id; each student gets a pool of
-- their own below it (pools.parent, one level, as Proxmox VE 8.1's nested pools: roles on the
-- parent reach the child's VMs, and the parent's quota counts the child's VMs).
ALTER TABLE pools ADD COLUMN parent TEXT;

CREATE TABLE labs (
    labid             TEXT PRIMARY KEY NOT NULL,    -- = the lab's pool
    comment           TEXT NOT NULL DEFAULT '',
    template          INTEGER NOT NULL,             -- the template VM students get a clone of
    node              TEXT NOT NULL DEFAULT '',     -- node of the students' VMs ('' = the template's)
    groupid           TEXT NOT NULL,                -- the roster: members of this group
    own_group         INTEGER NOT NULL DEFAULT 0,   -- the lab created the group (CSV roster)
    max_vms           INTEGER,                      -- quota of each student's pool (NULL = none)
    max_vcpus         INTEGER,
    max_memory_mib    INTEGER,
    starts_at         INTEGER NOT NULL,             -- unix seconds
    ends_at           INTEGER NOT NULL,             -- the VMs are stopped then
    delete_after_days INTEGER,                      -- torn down this long after the end (NULL = kept)
    ended             INTEGER NOT NULL DEFAULT 0,   -- the end was handled
    created_by        TEXT NOT NULL,
    created_at        INTEGER NOT NULL
);

-- What a lab's deployment made for each student.
CREATE TABLE lab_students (
    labid  TEXT NOT NULL REFERENCES labs (labid) ON DELETE CASCADE,
    userid TEXT NOT NULL,
    poolid TEXT NOT NULL,                           -- the student's pool (child of the lab's)
    vmid   INTEGER,                                 -- the student's VM, once cloned
    error  TEXT,                                    -- why the last deployment failed for them
    PRIMARY KEY (labid, userid)
);
CREATE INDEX lab_students_by_vm ON lab_students (vmid);
