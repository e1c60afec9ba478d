//! Typed calls to Kiln's REST API (`/api2/json`), made by the browser with `fetch`.
//!
//! Every answer is an [`Envelope`]; errors carry the server's message, which the UI shows as
//! is. State-changing calls send the session's CSRF token. Through [`Api`], a 401 ends the
//! session in the UI (back to the login page); [`login`] is the one call where a 401 only means
//! "wrong password".

use std::collections::BTreeMap;
use std::fmt;

use kiln_api_types::ha::{
    HaManagerStatus, HaResource, HaResourceCreate, HaResourceUpdate, HaRule, HaRuleRequest,
    MaintenanceRequest, NodeMaintenance,
};
use kiln_api_types::labs::{
    LabAccounts, LabCreate, LabDetail, LabEntry, LabImport, LabReset, LabUpdate,
};
use kiln_api_types::{
    ClusterResource, ClusterStatusEntry, Envelope, ImageEntry, JoinTokenCreated, NodeStatus,
    TaskLogLine, TaskSummary, Ticket, TicketRequest, VmConfig, VmCreateRequest, VmStatus,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::session::Auth;

/// Kiln's own routes (`/api2/kiln/...`); paths without a leading `/` are under `/api2/json`.
const KILN: &str = "/api2/kiln";

/// Why an API call failed, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// HTTP 401: not logged in any more (or, for [`login`], wrong credentials).
    Unauthorized(String),
    /// The server answered with an error status and this message.
    Server {
        /// HTTP status code.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// HTTP 400 with per-parameter messages (Proxmox's `errors` object).
    Params {
        /// The server's overall message.
        message: String,
        /// Parameter name → what is wrong with it.
        errors: BTreeMap<String, String>,
    },
    /// The request did not reach the server, or its answer could not be read.
    Network(String),
}

impl ApiError {
    /// The message for parameter `name`, if the server refused that parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            ApiError::Params { errors, .. } => errors.get(name).map(String::as_str),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthorized(message) => f.write_str(message),
            ApiError::Server { status, message } => write!(f, "{message} (HTTP {status})"),
            ApiError::Params { message, errors } => {
                f.write_str(message)?;
                for (i, (param, error)) in errors.iter().enumerate() {
                    let sep = if i == 0 { ": " } else { "; " };
                    write!(f, "{sep}{param}: {error}")?;
                }
                Ok(())
            }
            ApiError::Network(message) => write!(f, "Cannot reach the Kiln server: {message}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// HTTP methods the UI uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// Percent-encodes one path segment (node names and UPIDs go into URLs).
pub fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' => {
                out.push(char::from(byte))
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The URL of an API path: relative paths are under `/api2/json/`, absolute ones (Kiln's own
/// `/api2/kiln/...`) are taken as they are.
pub fn api_url(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/api2/json/{path}")
    }
}

/// Turns a raw HTTP answer into the envelope's data or an [`ApiError`].
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn decode<T: DeserializeOwned>(status: u16, status_text: &str, body: &str) -> Result<T, ApiError> {
    let envelope = serde_json::from_str::<Envelope<serde_json::Value>>(body);
    if !(200..300).contains(&status) {
        let (message, errors) = match envelope {
            Ok(e) => (e.message, e.errors.unwrap_or_default()),
            Err(_) => (None, BTreeMap::new()),
        };
        let message = message.filter(|m| !m.is_empty()).unwrap_or_else(|| {
            if status_text.is_empty() {
                format!("request failed with HTTP {status}")
            } else {
                status_text.to_owned()
            }
        });
        return Err(match status {
            401 => ApiError::Unauthorized(message),
            400 if !errors.is_empty() => ApiError::Params { message, errors },
            _ => ApiError::Server { status, message },
        });
    }
    let envelope = envelope
        .map_err(|e| ApiError::Network(format!("the answer is not a Kiln API envelope ({e})")))?;
    serde_json::from_value(envelope.data.unwrap_or(serde_json::Value::Null))
        .map_err(|e| ApiError::Network(format!("unexpected answer from the server ({e})")))
}

/// Sends one request to `/api2/json/{path}` and decodes the answer.
#[cfg(feature = "hydrate")]
async fn send<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<String>,
    csrf_token: Option<&str>,
) -> Result<T, ApiError> {
    use gloo_net::http::Request;

    let url = api_url(path);
    let mut builder = match method {
        Method::Get => Request::get(&url),
        Method::Post => Request::post(&url),
        Method::Put => Request::put(&url),
        Method::Delete => Request::delete(&url),
    }
    .cache(web_sys::RequestCache::NoStore)
    .header("Accept", "application/json");
    if let Some(token) = csrf_token {
        builder = builder.header("CSRFPreventionToken", token);
    }
    let request = match body {
        Some(json) => builder
            .header("Content-Type", "application/json")
            .body(json),
        None => builder.build(),
    }
    .map_err(|e| ApiError::Network(e.to_string()))?;
    let response = request
        .send()
        .await
        .map_err(|e| ApiError::Network(e.to_string()))?;
    let text = response
        .text()
        .await
        .map_err(|e| ApiError::Network(e.to_string()))?;
    decode(response.status(), &response.status_text(), &text)
}

/// Server-side rendering never calls the API: data is fetched by the browser only.
#[cfg(not(feature = "hydrate"))]
async fn send<T: DeserializeOwned>(
    _method: Method,
    path: &str,
    _body: Option<String>,
    _csrf_token: Option<&str>,
) -> Result<T, ApiError> {
    Err(ApiError::Network(format!(
        "{} can only be fetched by the browser",
        api_url(path)
    )))
}

/// Logs in (`POST /access/ticket`); the server also sets the session cookie.
pub async fn login(request: &TicketRequest) -> Result<Ticket, ApiError> {
    let body = serde_json::to_string(request).map_err(|e| ApiError::Network(e.to_string()))?;
    send(Method::Post, "access/ticket", Some(body), None).await
}

/// The REST API on behalf of the logged-in user: a 401 sends the UI back to the login page.
#[derive(Clone, Copy)]
pub struct Api {
    auth: Auth,
}

impl Api {
    /// An API client for the session in `auth`.
    pub fn new(auth: Auth) -> Self {
        Api { auth }
    }

    /// An API client for the session in context.
    pub fn expect() -> Self {
        Api::new(Auth::expect())
    }

    async fn call<T: DeserializeOwned>(
        self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, ApiError> {
        let csrf = match method {
            Method::Get => None,
            Method::Post | Method::Put | Method::Delete => self.auth.csrf_token(),
        };
        let result = send(method, path, body, csrf.as_deref()).await;
        if let Err(ApiError::Unauthorized(_)) = &result {
            self.auth.expired();
        }
        result
    }

    /// `GET /api2/json/{path}`.
    pub async fn get<T: DeserializeOwned>(self, path: &str) -> Result<T, ApiError> {
        self.call(Method::Get, path, None).await
    }

    /// `POST /api2/json/{path}` without a body, with the CSRF token.
    pub async fn post<T: DeserializeOwned>(self, path: &str) -> Result<T, ApiError> {
        self.call(Method::Post, path, None).await
    }

    /// `POST /api2/json/{path}` with `body` as JSON, with the CSRF token.
    pub async fn post_json<T: DeserializeOwned, B: Serialize>(
        self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = serde_json::to_string(body).map_err(|e| ApiError::Network(e.to_string()))?;
        self.call(Method::Post, path, Some(body)).await
    }

    /// `PUT /api2/json/{path}` with `body` as JSON, with the CSRF token.
    pub async fn put_json<T: DeserializeOwned, B: Serialize>(
        self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = serde_json::to_string(body).map_err(|e| ApiError::Network(e.to_string()))?;
        self.call(Method::Put, path, Some(body)).await
    }

    /// `DELETE /api2/json/{path}`, with the CSRF token.
    pub async fn delete<T: DeserializeOwned>(self, path: &str) -> Result<T, ApiError> {
        self.call(Method::Delete, path, None).await
    }

    /// `DELETE /access/ticket`: ends the session on the server.
    pub async fn logout(self) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(Method::Delete, "access/ticket", None)
            .await
            .map(|_| ())
    }

    /// `GET /cluster/resources`.
    pub async fn cluster_resources(self) -> Result<Vec<ClusterResource>, ApiError> {
        self.get("cluster/resources").await
    }

    /// `GET /cluster/tasks` (newest first).
    pub async fn cluster_tasks(self) -> Result<Vec<TaskSummary>, ApiError> {
        self.get("cluster/tasks").await
    }

    /// `GET /cluster/status`.
    pub async fn cluster_status(self) -> Result<Vec<ClusterStatusEntry>, ApiError> {
        self.get("cluster/status").await
    }

    /// `GET /cluster/ha/status/current`.
    pub async fn ha_status(self) -> Result<Vec<kiln_api_types::ha::HaStatusEntry>, ApiError> {
        self.get("cluster/ha/status/current").await
    }

    /// `GET /cluster/ha/status/manager_status`.
    pub async fn ha_manager_status(self) -> Result<HaManagerStatus, ApiError> {
        self.get("cluster/ha/status/manager_status").await
    }

    /// `GET /cluster/ha/resources`.
    pub async fn ha_resources(self) -> Result<Vec<HaResource>, ApiError> {
        self.get("cluster/ha/resources").await
    }

    /// `POST /cluster/ha/resources`: puts a VM under HA.
    pub async fn create_ha_resource(self, request: &HaResourceCreate) -> Result<(), ApiError> {
        self.post_json::<serde_json::Value, _>("cluster/ha/resources", request)
            .await
            .map(|_| ())
    }

    /// `PUT /cluster/ha/resources/{sid}`.
    pub async fn update_ha_resource(
        self,
        sid: &str,
        request: &HaResourceUpdate,
    ) -> Result<(), ApiError> {
        self.put_json::<serde_json::Value, _>(
            &format!("cluster/ha/resources/{}", segment(sid)),
            request,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /cluster/ha/resources/{sid}`: the VM leaves HA (it keeps running).
    pub async fn delete_ha_resource(self, sid: &str) -> Result<(), ApiError> {
        self.delete::<serde_json::Value>(&format!("cluster/ha/resources/{}", segment(sid)))
            .await
            .map(|_| ())
    }

    /// `GET /cluster/ha/rules` (each with the conflicts it has with the others).
    pub async fn ha_rules(self) -> Result<Vec<HaRule>, ApiError> {
        self.get("cluster/ha/rules").await
    }

    /// `POST /cluster/ha/rules`.
    pub async fn create_ha_rule(self, request: &HaRuleRequest) -> Result<(), ApiError> {
        self.post_json::<serde_json::Value, _>("cluster/ha/rules", request)
            .await
            .map(|_| ())
    }

    /// `PUT /cluster/ha/rules/{rule}`.
    pub async fn update_ha_rule(self, rule: &str, request: &HaRuleRequest) -> Result<(), ApiError> {
        self.put_json::<serde_json::Value, _>(
            &format!("cluster/ha/rules/{}", segment(rule)),
            request,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /cluster/ha/rules/{rule}`.
    pub async fn delete_ha_rule(self, rule: &str) -> Result<(), ApiError> {
        self.delete::<serde_json::Value>(&format!("cluster/ha/rules/{}", segment(rule)))
            .await
            .map(|_| ())
    }

    /// `GET /api2/kiln/nodes/{node}/maintenance` (Kiln extension).
    pub async fn node_maintenance(self, node: &str) -> Result<NodeMaintenance, ApiError> {
        self.get(&format!("{KILN}/nodes/{}/maintenance", segment(node)))
            .await
    }

    /// `POST /api2/kiln/nodes/{node}/maintenance` (Kiln extension): on or off.
    pub async fn set_node_maintenance(self, node: &str, enable: bool) -> Result<(), ApiError> {
        let body = MaintenanceRequest {
            enable: u8::from(enable),
        };
        self.post_json::<serde_json::Value, _>(
            &format!("{KILN}/nodes/{}/maintenance", segment(node)),
            &body,
        )
        .await
        .map(|_| ())
    }

    /// `GET /nodes/{node}/status`.
    pub async fn node_status(self, node: &str) -> Result<NodeStatus, ApiError> {
        self.get(&format!("nodes/{}/status", segment(node))).await
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    pub async fn task_status(self, node: &str, upid: &str) -> Result<TaskSummary, ApiError> {
        self.get(&format!(
            "nodes/{}/tasks/{}/status",
            segment(node),
            segment(upid)
        ))
        .await
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`.
    pub async fn task_log(self, node: &str, upid: &str) -> Result<Vec<TaskLogLine>, ApiError> {
        self.get(&format!(
            "nodes/{}/tasks/{}/log",
            segment(node),
            segment(upid)
        ))
        .await
    }

    /// `POST /cluster/join-tokens`: a one-time token for `kiln-node join`.
    pub async fn create_join_token(self) -> Result<JoinTokenCreated, ApiError> {
        self.post("cluster/join-tokens").await
    }

    /// `GET /cluster/nextid`: the lowest free VM id.
    pub async fn next_vmid(self) -> Result<u32, ApiError> {
        let id: String = self.get("cluster/nextid").await?;
        id.trim()
            .parse()
            .map_err(|_| ApiError::Network(format!("the server sent an invalid VM id {id:?}")))
    }

    /// `GET /cluster/nextid?vmid=N`: `Ok` when `vmid` is free, a 400 naming why not otherwise.
    pub async fn check_vmid(self, vmid: u32) -> Result<(), ApiError> {
        self.get::<serde_json::Value>(&format!("cluster/nextid?vmid={vmid}"))
            .await
            .map(|_| ())
    }

    /// `GET /nodes/{node}/images` (Kiln extension): the node's boot images.
    pub async fn node_images(self, node: &str) -> Result<Vec<ImageEntry>, ApiError> {
        self.get(&format!("nodes/{}/images", segment(node))).await
    }

    /// `POST /nodes/{node}/qemu`: creates a VM; returns the task's UPID.
    pub async fn create_vm(
        self,
        node: &str,
        request: &VmCreateRequest,
    ) -> Result<String, ApiError> {
        self.post_json(&format!("nodes/{}/qemu", segment(node)), request)
            .await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/status/current`.
    pub async fn vm_status(self, node: &str, vmid: u32) -> Result<VmStatus, ApiError> {
        self.get(&format!(
            "nodes/{}/qemu/{vmid}/status/current",
            segment(node)
        ))
        .await
    }

    /// `GET /nodes/{node}/qemu/{vmid}/config`.
    pub async fn vm_config(self, node: &str, vmid: u32) -> Result<VmConfig, ApiError> {
        self.get(&format!("nodes/{}/qemu/{vmid}/config", segment(node)))
            .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/status/{action}`: returns the task's UPID.
    pub async fn vm_action(self, node: &str, vmid: u32, action: &str) -> Result<String, ApiError> {
        self.post(&format!(
            "nodes/{}/qemu/{vmid}/status/{}",
            segment(node),
            segment(action)
        ))
        .await
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}`: destroys a stopped VM; returns the task's UPID.
    pub async fn delete_vm(self, node: &str, vmid: u32) -> Result<String, ApiError> {
        self.delete(&format!("nodes/{}/qemu/{vmid}", segment(node)))
            .await
    }

    /// `POST /nodes/{node}/qemu/{vmid}/template`: makes a stopped VM a template; returns the
    /// task's UPID.
    pub async fn make_template(self, node: &str, vmid: u32) -> Result<String, ApiError> {
        self.post_json(
            &format!("nodes/{}/qemu/{vmid}/template", segment(node)),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /api2/kiln/labs`: the labs the user runs, audits or attends.
    pub async fn labs(self) -> Result<Vec<LabEntry>, ApiError> {
        self.get("/api2/kiln/labs").await
    }

    /// `GET /api2/kiln/labs/{labid}`: a lab and its students.
    pub async fn lab(self, labid: &str) -> Result<LabDetail, ApiError> {
        self.get(&format!("/api2/kiln/labs/{}", segment(labid)))
            .await
    }

    /// `POST /api2/kiln/labs`: creates a lab; answers the accounts a CSV roster created.
    pub async fn create_lab(self, request: &LabCreate) -> Result<LabAccounts, ApiError> {
        self.post_json("/api2/kiln/labs", request).await
    }

    /// `PUT /api2/kiln/labs/{labid}`: changes its schedule or comment.
    pub async fn update_lab(self, labid: &str, request: &LabUpdate) -> Result<(), ApiError> {
        self.put_json::<serde_json::Value, _>(
            &format!("/api2/kiln/labs/{}", segment(labid)),
            request,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /api2/kiln/labs/{labid}`: tears the lab down; returns the task's UPID.
    pub async fn delete_lab(self, labid: &str) -> Result<String, ApiError> {
        self.delete(&format!("/api2/kiln/labs/{}", segment(labid)))
            .await
    }

    /// `POST /api2/kiln/labs/{labid}/students`: adds accounts from a roster CSV.
    pub async fn import_students(self, labid: &str, csv: String) -> Result<LabAccounts, ApiError> {
        self.post_json(
            &format!("/api2/kiln/labs/{}/students", segment(labid)),
            &LabImport { csv },
        )
        .await
    }

    /// `POST /api2/kiln/labs/{labid}/deploy`: returns the task's UPID.
    pub async fn deploy_lab(self, labid: &str) -> Result<String, ApiError> {
        self.post_json(
            &format!("/api2/kiln/labs/{}/deploy", segment(labid)),
            &serde_json::json!({}),
        )
        .await
    }

    /// `POST /api2/kiln/labs/{labid}/status/{start|stop}`: returns the task's UPID.
    pub async fn lab_power(self, labid: &str, action: &str) -> Result<String, ApiError> {
        self.post_json(
            &format!(
                "/api2/kiln/labs/{}/status/{}",
                segment(labid),
                segment(action)
            ),
            &serde_json::json!({}),
        )
        .await
    }

    /// `POST /api2/kiln/labs/{labid}/reset`: re-clones a student's VM (the caller's without
    /// `userid`); returns the task's UPID.
    pub async fn reset_lab_vm(
        self,
        labid: &str,
        userid: Option<String>,
    ) -> Result<String, ApiError> {
        self.post_json(
            &format!("/api2/kiln/labs/{}/reset", segment(labid)),
            &LabReset { userid },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_upid_characters_and_escape_the_rest() {
        assert_eq!(
            segment("UPID:n1:0001:root@kiln:"),
            "UPID:n1:0001:root@kiln:"
        );
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn paths_are_under_api2_json_unless_absolute() {
        assert_eq!(api_url("cluster/ha/rules"), "/api2/json/cluster/ha/rules");
        assert_eq!(
            api_url(&format!("{KILN}/nodes/n1/maintenance")),
            "/api2/kiln/nodes/n1/maintenance"
        );
    }

    #[test]
    fn error_answers_carry_the_server_message() {
        let body = r#"{"data":null,"message":"authentication failure"}"#;
        assert_eq!(
            decode::<Ticket>(401, "Unauthorized", body),
            Err(ApiError::Unauthorized("authentication failure".into()))
        );
        let err = decode::<Ticket>(429, "Too Many Requests", "not json");
        assert_eq!(
            err,
            Err(ApiError::Server {
                status: 429,
                message: "Too Many Requests".into()
            })
        );
    }

    #[test]
    fn parameter_errors_are_kept_per_field() {
        let body = r#"{"data":null,"message":"invalid parameters","errors":{"name":"not a DNS name","vmid":"VM 101 exists"}}"#;
        let err = decode::<String>(400, "Bad Request", body).expect_err("a 400");
        assert_eq!(err.param("name"), Some("not a DNS name"));
        assert_eq!(err.param("cores"), None);
        assert_eq!(
            err.to_string(),
            "invalid parameters: name: not a DNS name; vmid: VM 101 exists"
        );
        // A 400 without per-field errors stays a plain server error.
        let plain = decode::<String>(400, "Bad Request", r#"{"data":null,"message":"no"}"#);
        assert_eq!(
            plain,
            Err(ApiError::Server {
                status: 400,
                message: "no".into()
            })
        );
    }

    #[test]
    fn data_is_unwrapped_from_the_envelope() {
        let body = r#"{"data":[{"n":1,"t":"started"}]}"#;
        let lines: Vec<TaskLogLine> = decode(200, "OK", body).expect("valid log");
        assert_eq!(lines[0].t, "started");
        let unit: () = decode(200, "OK", r#"{"data":null}"#).expect("null data is unit");
        assert_eq!(unit, ());
    }
}
