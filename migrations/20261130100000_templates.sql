-- Templates (issue 6): a VM marked as template keeps its configuration to be cloned and can no
-- longer be started (Proxmox's `POST /nodes/{node}/qemu/{vmid}/template`).
ALTER TABLE vms ADD COLUMN template INTEGER NOT NULL DEFAULT 0;
