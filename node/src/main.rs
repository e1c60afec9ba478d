//! `kiln-node`: the Kiln node agent.
//!
//! `kiln-node join` makes the host a cluster member; `kiln-node run` serves the node API over
//! mutual TLS.

mod api;
mod config;
mod facts;
mod join;
mod tls_server;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_node_client::{JoinToken, NodeName};
use tracing_subscriber::EnvFilter;

use crate::config::DataDir;

/// Kiln node agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Directory holding the node's configuration, key and certificates.
    #[arg(
        long,
        global = true,
        env = "KILN_NODE_DATA_DIR",
        default_value = "/var/lib/kiln-node"
    )]
    data_dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a Kiln cluster with a one-time join token.
    Join {
        /// URL of the Kiln server, e.g. https://10.0.0.1:8006.
        server_url: String,
        /// The join token (kiln1.…), as printed by `kiln-server join-token` or the web UI.
        #[arg(env = "KILN_NODE_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The node's name: a DNS label such as `pve2`.
        #[arg(long)]
        name: NodeName,
        /// Address the node API will listen on, e.g. 10.0.0.5:8007.
        #[arg(long, env = "KILN_NODE_LISTEN")]
        listen: SocketAddr,
        /// URL the server reaches the node API at [default: https://<LISTEN>].
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Serve the node API (requires a joined data directory).
    Run {
        /// Listen on this address instead of the one stored at join time.
        #[arg(long, env = "KILN_NODE_LISTEN")]
        listen: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run_command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-node: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out causes the message already quotes.
fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let data = DataDir::new(&cli.data_dir);
    match cli.command {
        Command::Join {
            server_url,
            token,
            name,
            listen,
            advertise,
        } => {
            // Parsed here rather than by clap so that a mistyped token is never echoed.
            let token: JoinToken = token.parse()?;
            let plan = join::JoinPlan {
                server_url,
                token,
                name,
                listen,
                advertise,
            };
            let joined = runtime.block_on(join::join(&data, plan))?;
            println!(
                "joined the cluster as {} (certificate SHA-256 {}, task {}); start the agent with: kiln-node run --data-dir {}",
                joined.config.name,
                joined.cert_fingerprint.to_colon_hex(),
                joined.upid,
                data.path().display()
            );
            Ok(())
        }
        Command::Run { listen } => runtime.block_on(run(&data, listen)),
    }
}

async fn run(data: &DataDir, listen_override: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = data.load_config()?;
    let identity = data.load_identity()?;
    let tls = identity
        .server_config()
        .with_context(|| format!("cannot use the TLS files in {}", data.path().display()))?;
    let reader = facts::FactsReader::new(Path::new("/proc"), config.name.clone())
        .context("cannot read host facts")?;
    let facts = facts::spawn_sampler(reader)
        .await
        .context("cannot read host facts")?;

    let listen = listen_override.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!("kiln-node {} listening on {local}", config.name);

    let app = api::router(api::AppState { facts });
    tls_server::serve(listener, Arc::new(tls), app, shutdown_signal()).await;
    tracing::info!("kiln-node {} stopped", config.name);
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}
