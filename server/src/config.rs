//! Command-line and environment configuration of `kiln-server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::LeasePolicy;

/// Kiln console server: web UI, REST API and cluster state.
#[derive(Debug, Parser)]
#[command(name = "kiln-server", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Run(RunArgs),
    /// Create a one-time join token for `kiln-node join` and print it.
    JoinToken(JoinTokenArgs),
    /// Print every API route with the privileges it requires (JSON).
    Routes,
}

/// Options of `kiln-server run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Address for HTTPS (web UI and API).
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:8006")]
    pub listen: SocketAddr,
    /// Directory for the database and the PKI.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Directory of the built web UI (cargo-leptos's site root).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Name of the cluster, shown in the UI.
    #[arg(long, env = "KILN_CLUSTER_NAME", default_value = "kiln")]
    pub cluster_name: String,
    /// Extra DNS names or IPs for the HTTPS certificate (when it is first created).
    #[arg(long = "tls-san", env = "KILN_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
    /// Milliseconds between two heartbeats to each node.
    #[arg(long, env = "KILN_HEARTBEAT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub heartbeat_ms: u64,
    /// A node silent this long is marked offline.
    #[arg(long, env = "KILN_NODE_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub node_timeout_secs: u64,
    /// HA lease granted to each node with every heartbeat, in seconds: an HA-managed VM stops
    /// itself when its node's lease runs out without renewal. At least 3 heartbeat periods.
    #[arg(long, env = "KILN_HA_LEASE_SECS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ha_lease_secs: u64,
    /// Safety margin on top of the lease before the server treats a silent node's lease as
    /// surely expired and recovers its HA VMs elsewhere, in milliseconds.
    #[arg(long, env = "KILN_HA_LEASE_MARGIN_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub ha_lease_margin_ms: u64,
    /// Memory assignable to running VMs per node, as a multiple of its RAM (1.0: none beyond RAM).
    #[arg(long, env = "KILN_MEMORY_OVERCOMMIT", default_value_t = 1.0)]
    pub memory_overcommit: f64,
    /// A failed login is answered after this delay (as Proxmox does), in milliseconds.
    #[arg(long, env = "KILN_LOGIN_FAILURE_DELAY_MS", default_value_t = 2000)]
    pub login_failure_delay_ms: u64,
    /// A session unused this long ends (seconds).
    #[arg(long, env = "KILN_SESSION_IDLE_SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_idle_secs: u64,
    /// Seconds between two checks of the labs' schedules (their end stops their VMs).
    #[arg(long, env = "KILN_LAB_CHECK_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lab_check_secs: u64,
    /// A session ends this long after login (seconds).
    #[arg(long, env = "KILN_SESSION_MAX_SECS", default_value_t = 8 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_max_secs: u64,
}

/// Options of `kiln-server join-token`.
#[derive(Debug, Args, Clone)]
pub struct JoinTokenArgs {
    /// The server's data directory.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Lifetime of the token in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    pub ttl_secs: u64,
}

impl RunArgs {
    /// Heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Period of the labs' schedule check.
    pub fn lab_check(&self) -> Duration {
        Duration::from_secs(self.lab_check_secs)
    }

    /// Silence after which a node is offline.
    pub fn node_timeout(&self) -> Duration {
        Duration::from_secs(self.node_timeout_secs)
    }

    /// The HA lease timings, checked against the heartbeat: a node extends its lease from
    /// the grant of the previous heartbeat, so a lease shorter than three periods would run
    /// out between two renewals.
    pub fn lease_policy(&self) -> anyhow::Result<LeasePolicy> {
        let lease = Duration::from_secs(self.ha_lease_secs);
        if lease < 3 * self.heartbeat() {
            anyhow::bail!(
                "--ha-lease-secs {} is too short for --heartbeat-ms {}: the lease must last at least three heartbeats",
                self.ha_lease_secs,
                self.heartbeat_ms
            );
        }
        Ok(LeasePolicy {
            lease,
            margin: Duration::from_millis(self.ha_lease_margin_ms),
        })
    }
}
