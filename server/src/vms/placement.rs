//! Placement: may a VM of a given size start on a node?

use kiln_api_types::NodeState;

use crate::api::error::ApiError;
use crate::state::AppState;

const MIB: u64 = 1024 * 1024;

/// Refuse to start a VM of `memory_mib` on `node` if the memory assigned to the VMs running
/// there plus this one would exceed the node's RAM times the overcommit factor. The message
/// says by how much.
pub fn check_capacity(
    app: &AppState,
    node: &str,
    vmid: u32,
    memory_mib: u32,
) -> Result<(), ApiError> {
    let rt = app.nodes.get(node);
    let facts = match (&rt.facts, rt.state(app.nodes.timeout())) {
        (Some(f), NodeState::Online) => f,
        _ => {
            return Err(ApiError::Unavailable(format!(
                "node {node} is offline; start kiln-node there or move the VM to another node"
            )))
        }
    };
    let total = (facts.mem_total as f64 * app.memory_overcommit) as u64;
    let assigned: u64 = facts
        .vms
        .iter()
        .filter(|v| v.vmid != vmid && v.state != kiln_node_client::wire::VmPowerState::Stopped)
        .map(|v| v.memory_bytes)
        .sum();
    let need = u64::from(memory_mib) * MIB;
    let free = total.saturating_sub(assigned);
    if need > free {
        return Err(ApiError::Conflict(format!(
            "not enough memory on node {node} to start VM {vmid}: it needs {} MiB but only {} MiB of {} MiB are not assigned to running VMs (short by {} MiB); stop a VM, give this one less memory, or start it on another node",
            need / MIB,
            free / MIB,
            total / MIB,
            (need - free).div_ceil(MIB)
        )));
    }
    Ok(())
}
