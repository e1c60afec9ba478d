//! The route table: every API route with the privilege it requires. The router is built from
//! it (so a route cannot exist without a declared [`Check`]), `kiln-server routes` prints it,
//! and the permission-matrix test reads it.

use std::collections::BTreeMap;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use serde::Serialize;

use super::{
    access, audit, cluster, console, events, guard, ha, join, labs, migrate, nodes, pools, qemu,
    tasks, templates, version,
};
use crate::access::setup::DuringSetup;
use crate::access::Check;
use crate::access::Privilege::{self, *};
use crate::state::AppState;

/// One route: method, path, required check, handler.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path with `{param}`s (axum syntax).
    pub path: &'static str,
    /// What the caller must hold; enforced before the handler.
    pub check: &'static Check,
    /// Whether a session with a login step still to take may use it.
    pub during_setup: DuringSetup,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// Open this route to sessions that still have a login step to take.
    fn during_setup(mut self, access: DuringSetup) -> Self {
        self.during_setup = access;
        self
    }
}

/// A route as printed by `kiln-server routes`.
#[derive(Debug, Serialize)]
pub struct RouteInfo {
    /// HTTP method.
    pub method: String,
    /// Path with `{param}`s.
    pub path: &'static str,
    /// The check.
    pub check: &'static Check,
    /// Whether a session with a login step still to take may use it.
    pub during_setup: DuringSetup,
}

macro_rules! method_fn {
    ($name:ident, $method:ident, $routing:path) => {
        fn $name<H, T>(path: &'static str, check: &'static Check, handler: H) -> Route
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            Route {
                method: Method::$method,
                path,
                check,
                during_setup: DuringSetup::Refused,
                handler: $routing(handler),
            }
        }
    };
}
method_fn!(get, GET, axum::routing::get);
method_fn!(post, POST, axum::routing::post);
method_fn!(put, PUT, axum::routing::put);
method_fn!(delete, DELETE, axum::routing::delete);

const PUBLIC: Check = Check::Public;
/// Any user; the handler filters what it shows, or acts on the caller only.
const ANY_USER: Check = Check::Authenticated;

/// All of `privs` on `path` (a literal, so that `&perm!(..)` is a `'static` constant).
macro_rules! perm {
    ($path:expr, $privs:expr) => {
        Check::Perm {
            path: $path,
            privs: $privs,
            any: false,
        }
    };
}

/// Any of `privs` on `path`.
macro_rules! perm_any {
    ($path:expr, $privs:expr) => {
        Check::Perm {
            path: $path,
            privs: $privs,
            any: true,
        }
    };
}

const VM_CONFIG: &[Privilege] = &[
    VmConfigCpu,
    VmConfigMemory,
    VmConfigDisk,
    VmConfigOptions,
    VmConfigCdrom,
    VmConfigCloudinit,
    VmConfigHwType,
    VmConfigNetwork,
];
const NODE_AUDIT: Check = perm!("/nodes/{node}", &[SysAudit]);
const TASK_READ: Check = Check::Or {
    any_of: &[Check::TaskOwner { param: "upid" }, NODE_AUDIT],
};
const TASK_STOP: Check = Check::Or {
    any_of: &[
        Check::TaskOwner { param: "upid" },
        perm!("/nodes/{node}", &[SysModify]),
    ],
};
const HA_READ: Check = perm!("/", &[SysAudit]);
const HA_MODIFY: Check = perm!("/", &[SysModify]);
const SELF: Check = Check::IsUser { param: "userid" };
const USER_READ: Check = Check::Or {
    any_of: &[
        SELF,
        Check::UserGroup {
            param: "userid",
            privs: &[UserModify, SysAudit],
        },
    ],
};
const USER_MODIFY: Check = Check::UserGroup {
    param: "userid",
    privs: &[UserModify],
};
const SELF_OR_USER_MODIFY: Check = Check::SessionOnly {
    then: &Check::Or {
        any_of: &[SELF, USER_MODIFY],
    },
};
const GROUP_ALLOCATE: Check = perm!("/access/groups/{groupid}", &[GroupAllocate]);
const ROLE_MODIFY: Check = perm!("/access", &[SysModify]);
const POOL_ALLOCATE: Check = perm!("/pool/{poolid}", &[PoolAllocate]);
const VM_CREATE: Check = Check::Or {
    any_of: &[
        perm!("/vms/{vmid}", &[VmAllocate]),
        perm!("/pool/{pool}", &[VmAllocate]),
    ],
};

/// Proxmox's clone check: `VM.Clone` on the source, and `VM.Allocate` on the new id or on
/// the pool it goes into.
const VM_CLONE: Check = Check::All {
    all_of: &[
        perm!("/vms/{vmid}", &[VmClone]),
        Check::Or {
            any_of: &[
                perm!("/vms/{newid}", &[VmAllocate]),
                perm!("/pool/{pool}", &[VmAllocate]),
            ],
        },
    ],
};

/// Running a lab: `Pool.Allocate` on its pool (the lab's id).
const LAB_MANAGE: Check = perm!("/pool/{labid}", &[PoolAllocate]);
/// Making or removing a lab's VMs.
const LAB_ALLOCATE: Check = perm!("/pool/{labid}", &[PoolAllocate, VmAllocate]);

/// Every API route.
pub fn routes() -> Vec<Route> {
    vec![
        get("/api2/json/version", &ANY_USER, version::get).during_setup(DuringSetup::Allowed),
        // access
        post("/api2/json/access/ticket", &PUBLIC, access::ticket::login),
        delete(
            "/api2/json/access/ticket",
            &ANY_USER,
            access::ticket::logout,
        )
        .during_setup(DuringSetup::Allowed),
        get("/api2/json/access/users", &ANY_USER, access::users::list),
        post(
            "/api2/json/access/users",
            &perm!("/access/groups", &[UserModify]),
            access::users::create,
        ),
        get(
            "/api2/json/access/users/{userid}",
            &USER_READ,
            access::users::read,
        )
        .during_setup(DuringSetup::OwnAccount),
        put(
            "/api2/json/access/users/{userid}",
            &USER_MODIFY,
            access::users::update,
        ),
        delete(
            "/api2/json/access/users/{userid}",
            &USER_MODIFY,
            access::users::remove,
        ),
        get(
            "/api2/json/access/users/{userid}/token",
            &USER_READ,
            access::tokens::list,
        ),
        get(
            "/api2/json/access/users/{userid}/token/{tokenid}",
            &USER_READ,
            access::tokens::read,
        ),
        post(
            "/api2/json/access/users/{userid}/token/{tokenid}",
            &SELF_OR_USER_MODIFY,
            access::tokens::create,
        ),
        delete(
            "/api2/json/access/users/{userid}/token/{tokenid}",
            &SELF_OR_USER_MODIFY,
            access::tokens::remove,
        ),
        get("/api2/json/access/groups", &ANY_USER, access::groups::list),
        post(
            "/api2/json/access/groups",
            &perm!("/access/groups", &[GroupAllocate]),
            access::groups::create,
        ),
        get(
            "/api2/json/access/groups/{groupid}",
            &perm_any!("/access/groups/{groupid}", &[SysAudit, GroupAllocate]),
            access::groups::read,
        ),
        put(
            "/api2/json/access/groups/{groupid}",
            &GROUP_ALLOCATE,
            access::groups::update,
        ),
        delete(
            "/api2/json/access/groups/{groupid}",
            &GROUP_ALLOCATE,
            access::groups::remove,
        ),
        get("/api2/json/access/roles", &ANY_USER, access::roles::list),
        post(
            "/api2/json/access/roles",
            &ROLE_MODIFY,
            access::roles::create,
        ),
        get(
            "/api2/json/access/roles/{roleid}",
            &ANY_USER,
            access::roles::read,
        ),
        put(
            "/api2/json/access/roles/{roleid}",
            &ROLE_MODIFY,
            access::roles::update,
        ),
        delete(
            "/api2/json/access/roles/{roleid}",
            &ROLE_MODIFY,
            access::roles::remove,
        ),
        get("/api2/json/access/acl", &ANY_USER, access::acl::list),
        put(
            "/api2/json/access/acl",
            &perm!("{path}", &[PermissionsModify]),
            access::acl::update,
        ),
        get(
            "/api2/json/access/permissions",
            &Check::Or {
                any_of: &[SELF, perm!("/access", &[SysAudit])],
            },
            access::permissions::get,
        ),
        put(
            "/api2/json/access/password",
            &SELF_OR_USER_MODIFY,
            access::password::change,
        )
        .during_setup(DuringSetup::OwnAccount),
        get(
            "/api2/json/access/tfa/{userid}",
            &USER_READ,
            access::tfa::list,
        )
        .during_setup(DuringSetup::OwnAccount),
        post(
            "/api2/json/access/tfa/{userid}",
            &Check::SessionOnly { then: &SELF },
            access::tfa::add,
        )
        .during_setup(DuringSetup::OwnAccount),
        delete(
            "/api2/json/access/tfa/{userid}/{id}",
            &SELF_OR_USER_MODIFY,
            access::tfa::remove,
        )
        .during_setup(DuringSetup::OwnAccount),
        // pools
        get("/api2/json/pools", &ANY_USER, pools::list),
        post("/api2/json/pools", &POOL_ALLOCATE, pools::create),
        get(
            "/api2/json/pools/{poolid}",
            &perm!("/pool/{poolid}", &[PoolAudit]),
            pools::read,
        ),
        put("/api2/json/pools/{poolid}", &POOL_ALLOCATE, pools::update),
        delete("/api2/json/pools/{poolid}", &POOL_ALLOCATE, pools::remove),
        // nodes, tasks
        get("/api2/json/nodes", &ANY_USER, nodes::list),
        get("/api2/json/nodes/{node}/status", &NODE_AUDIT, nodes::status),
        get("/api2/json/nodes/{node}/tasks", &ANY_USER, tasks::list_node),
        delete(
            "/api2/json/nodes/{node}/tasks/{upid}",
            &TASK_STOP,
            tasks::stop,
        ),
        get(
            "/api2/json/nodes/{node}/tasks/{upid}/status",
            &TASK_READ,
            tasks::status,
        ),
        get(
            "/api2/json/nodes/{node}/tasks/{upid}/log",
            &TASK_READ,
            tasks::log,
        ),
        get("/api2/json/nodes/{node}/images", &NODE_AUDIT, qemu::images),
        // VMs
        get("/api2/json/nodes/{node}/qemu", &ANY_USER, qemu::list),
        post("/api2/json/nodes/{node}/qemu", &VM_CREATE, qemu::create),
        delete(
            "/api2/json/nodes/{node}/qemu/{vmid}",
            &perm!("/vms/{vmid}", &[VmAllocate]),
            qemu::destroy,
        ),
        get(
            "/api2/json/nodes/{node}/qemu/{vmid}/config",
            &perm!("/vms/{vmid}", &[VmAudit]),
            qemu::get_config,
        ),
        put(
            "/api2/json/nodes/{node}/qemu/{vmid}/config",
            &perm_any!("/vms/{vmid}", VM_CONFIG),
            qemu::set_config,
        ),
        post(
            "/api2/json/nodes/{node}/qemu/{vmid}/config",
            &perm_any!("/vms/{vmid}", VM_CONFIG),
            qemu::set_config,
        ),
        get(
            "/api2/json/nodes/{node}/qemu/{vmid}/migrate",
            &perm!("/vms/{vmid}", &[VmMigrate]),
            migrate::preconditions,
        ),
        post(
            "/api2/json/nodes/{node}/qemu/{vmid}/migrate",
            &perm!("/vms/{vmid}", &[VmMigrate]),
            migrate::migrate,
        ),
        post(
            "/api2/json/nodes/{node}/qemu/{vmid}/template",
            &perm!("/vms/{vmid}", &[VmAllocate]),
            templates::template,
        ),
        post(
            "/api2/json/nodes/{node}/qemu/{vmid}/clone",
            &VM_CLONE,
            templates::clone,
        ),
        get(
            "/api2/json/nodes/{node}/qemu/{vmid}/status/current",
            &perm!("/vms/{vmid}", &[VmAudit]),
            qemu::status,
        ),
        post(
            "/api2/json/nodes/{node}/qemu/{vmid}/status/{action}",
            &perm!("/vms/{vmid}", &[VmPowerMgmt]),
            qemu::action,
        ),
        // cluster
        get("/api2/json/cluster/nextid", &ANY_USER, qemu::next_id),
        get(
            "/api2/json/cluster/status",
            &perm!("/", &[SysAudit]),
            cluster::status,
        ),
        get(
            "/api2/json/cluster/resources",
            &ANY_USER,
            cluster::resources,
        ),
        get("/api2/json/cluster/tasks", &ANY_USER, tasks::list_cluster),
        // high availability
        get(
            "/api2/json/cluster/ha/resources",
            &HA_READ,
            ha::list_resources,
        ),
        post(
            "/api2/json/cluster/ha/resources",
            &HA_MODIFY,
            ha::create_resource,
        ),
        get(
            "/api2/json/cluster/ha/resources/{sid}",
            &HA_READ,
            ha::get_resource,
        ),
        put(
            "/api2/json/cluster/ha/resources/{sid}",
            &HA_MODIFY,
            ha::update_resource,
        ),
        delete(
            "/api2/json/cluster/ha/resources/{sid}",
            &HA_MODIFY,
            ha::delete_resource,
        ),
        post(
            "/api2/json/cluster/ha/resources/{sid}/migrate",
            &HA_MODIFY,
            ha::migrate,
        ),
        post(
            "/api2/json/cluster/ha/resources/{sid}/relocate",
            &HA_MODIFY,
            ha::relocate,
        ),
        get("/api2/json/cluster/ha/rules", &HA_READ, ha::list_rules),
        post("/api2/json/cluster/ha/rules", &HA_MODIFY, ha::create_rule),
        get("/api2/json/cluster/ha/rules/{rule}", &HA_READ, ha::get_rule),
        put(
            "/api2/json/cluster/ha/rules/{rule}",
            &HA_MODIFY,
            ha::update_rule,
        ),
        delete(
            "/api2/json/cluster/ha/rules/{rule}",
            &HA_MODIFY,
            ha::delete_rule,
        ),
        get(
            "/api2/json/cluster/ha/status/current",
            &HA_READ,
            ha::status_current,
        ),
        get(
            "/api2/json/cluster/ha/status/manager_status",
            &HA_READ,
            ha::manager_status,
        ),
        get(
            "/api2/kiln/nodes/{node}/maintenance",
            &NODE_AUDIT,
            ha::maintenance_state,
        ),
        post(
            "/api2/kiln/nodes/{node}/maintenance",
            &perm!("/nodes/{node}", &[SysModify]),
            ha::maintenance,
        ),
        post(
            "/api2/json/cluster/join-tokens",
            &perm!("/", &[SysModify]),
            join::create_token,
        ),
        // Kiln extensions
        get("/api2/kiln/ca", &PUBLIC, join::ca),
        post("/api2/kiln/join", &PUBLIC, join::join),
        get("/api2/kiln/events", &ANY_USER, events::stream),
        get("/api2/kiln/audit", &perm!("/", &[SysAudit]), audit::list),
        // teaching labs
        get("/api2/kiln/labs", &ANY_USER, labs::list),
        post("/api2/kiln/labs", &LAB_ALLOCATE, labs::create),
        get("/api2/kiln/labs/{labid}", &ANY_USER, labs::read),
        put("/api2/kiln/labs/{labid}", &LAB_MANAGE, labs::update),
        delete("/api2/kiln/labs/{labid}", &LAB_ALLOCATE, labs::remove),
        post(
            "/api2/kiln/labs/{labid}/students",
            &LAB_MANAGE,
            labs::roster::import,
        ),
        post(
            "/api2/kiln/labs/{labid}/deploy",
            &LAB_ALLOCATE,
            labs::actions::deploy,
        ),
        post(
            "/api2/kiln/labs/{labid}/status/{action}",
            &perm!("/pool/{labid}", &[VmPowerMgmt]),
            labs::actions::power,
        ),
        post(
            "/api2/kiln/labs/{labid}/reset",
            &Check::Or {
                any_of: &[Check::IsUser { param: "userid" }, LAB_MANAGE],
            },
            labs::actions::reset,
        ),
        get(
            "/api2/kiln/nodes/{node}/qemu/{vmid}/console",
            &perm!("/vms/{vmid}", &[VmConsole]),
            console::console,
        ),
    ]
}

/// The table without handlers, for `kiln-server routes`.
pub fn table() -> Vec<RouteInfo> {
    routes()
        .into_iter()
        .map(|r| RouteInfo {
            method: r.method.to_string(),
            path: r.path,
            check: r.check,
            during_setup: r.during_setup,
        })
        .collect()
}

/// The router of all routes, each behind the enforcement of its check.
pub fn build() -> axum::Router<AppState> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for r in routes() {
        let (check, during_setup) = (r.check, r.during_setup);
        let guarded = r.handler.route_layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                guard::enforce(check, during_setup, req, next)
            },
        ));
        let merged = match by_path.remove(r.path) {
            Some(existing) => existing.merge(guarded),
            None => guarded,
        };
        by_path.insert(r.path, merged);
    }
    by_path
        .into_iter()
        .fold(axum::Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once_with_its_path_parameters_known() {
        let mut seen = std::collections::BTreeSet::new();
        for r in routes() {
            assert!(
                seen.insert((r.method.to_string(), r.path)),
                "{} {} is declared twice",
                r.method,
                r.path
            );
            // A check may only read parameters that exist: path parameters, or (for body and
            // query parameters) the ones listed here.
            for p in r.check.params() {
                let in_path = r.path.contains(&format!("{{{p}}}"));
                let known_elsewhere = matches!(
                    p,
                    "vmid" | "newid" | "pool" | "path" | "poolid" | "userid" | "labid"
                );
                assert!(
                    in_path || known_elsewhere,
                    "{} {}: check reads unknown parameter {p}",
                    r.method,
                    r.path
                );
            }
            // A route open to a restricted session "on its own account" must read `userid`.
            if r.during_setup == DuringSetup::OwnAccount {
                assert!(
                    r.check.params().contains(&"userid"),
                    "{} {} is open during setup for the own account but reads no userid",
                    r.method,
                    r.path
                );
            }
        }
    }
}
