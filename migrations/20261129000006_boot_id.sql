-- The boot id each node last reported: a different one means the host booted, and the
-- server starts that node's on-boot VMs (NULL until the node's first report).
ALTER TABLE nodes ADD COLUMN boot_id TEXT;
