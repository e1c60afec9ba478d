//! `kiln-node`: the Kiln node agent.
//!
//! `kiln-node join` makes the host a cluster member; `kiln-node run` serves the node API over
//! mutual TLS and supervises the node's VMs (one `kiln-vmm` process each).

mod api;
mod config;
mod facts;
mod join;
mod lease;
mod tls_server;
mod vms;

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
    /// Serve the node API and run VMs (requires a joined data directory).
    Run {
        /// Listen on this address instead of the one stored at join time.
        #[arg(long, env = "KILN_NODE_LISTEN")]
        listen: Option<SocketAddr>,
        /// The kiln-vmm binary [default: kiln-vmm next to this executable].
        #[arg(long, env = "KILN_VMM_BIN", value_name = "PATH")]
        vmm_bin: Option<PathBuf>,
        /// The Kiln test guest, registered as image `kiln-test-guest`
        /// [default: /usr/share/kiln/kiln-test-guest, else kiln-test-guest next to this
        /// executable].
        #[arg(long, env = "KILN_TEST_GUEST", value_name = "PATH")]
        test_guest: Option<PathBuf>,
        /// Import the image directories found here into the image store at start: DIR itself
        /// if it holds an image.json, else each subdirectory that does (e.g. target/images
        /// after `make guest-linux`). Repeatable; the environment variable takes a
        /// comma-separated list.
        #[arg(
            long = "image-dir",
            env = "KILN_IMAGE_DIRS",
            value_name = "DIR",
            value_delimiter = ','
        )]
        image_dirs: Vec<PathBuf>,
        /// Where the host's boot id is read; a new value counts as a host boot, after which
        /// the server starts this node's on-boot VMs.
        #[arg(
            long,
            env = "KILN_BOOT_ID_FILE",
            value_name = "PATH",
            default_value = "/proc/sys/kernel/random/boot_id"
        )]
        boot_id_file: PathBuf,
        /// Ports an incoming live migration listens on (the first free one), on the API's
        /// address: open them between the nodes in a firewall. `0-0` lets the kernel pick.
        #[arg(
            long,
            env = "KILN_MIGRATION_PORTS",
            value_name = "LOW-HIGH",
            default_value = "60000-60050"
        )]
        migration_ports: vms::process::PortRange,
    },
}

/// What `kiln-node run` needs besides the data directory.
struct RunOptions {
    listen: Option<SocketAddr>,
    vmm_bin: Option<PathBuf>,
    test_guest: Option<PathBuf>,
    image_dirs: Vec<PathBuf>,
    boot_id_file: PathBuf,
    migration_ports: vms::process::PortRange,
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
        Command::Run {
            listen,
            vmm_bin,
            test_guest,
            image_dirs,
            boot_id_file,
            migration_ports,
        } => {
            // kiln-vmm runs in its VM's directory: paths handed to it must be absolute.
            let data = DataDir::new(std::path::absolute(&cli.data_dir).with_context(|| {
                format!("cannot resolve --data-dir {}", cli.data_dir.display())
            })?);
            runtime.block_on(run(
                &data,
                RunOptions {
                    listen,
                    vmm_bin,
                    test_guest,
                    image_dirs,
                    boot_id_file,
                    migration_ports,
                },
            ))
        }
    }
}

async fn run(data: &DataDir, options: RunOptions) -> anyhow::Result<()> {
    let config = data.load_config()?;
    let identity = data.load_identity()?;
    let tls = identity
        .server_config()
        .with_context(|| format!("cannot use the TLS files in {}", data.path().display()))?;
    let reader = facts::FactsReader::new(Path::new("/proc"), config.name.clone())
        .context("cannot read host facts")?
        .with_boot_id_file(options.boot_id_file.clone());
    let facts = facts::spawn_sampler(reader)
        .await
        .context("cannot read host facts")?;
    let listen = options.listen.unwrap_or(config.listen);
    let migration = vms::process::MigrationNet {
        bind: listen.ip(),
        ports: options.migration_ports,
        tls: kiln_vmm::protocol::TlsFiles {
            ca: data.path().join(config::CA_FILE),
            cert: data.path().join(config::CERT_FILE),
            key: data.path().join(config::KEY_FILE),
        },
    };
    let vms = open_supervisor(data, &config.name, &facts.borrow(), &options, migration).await?;

    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!("kiln-node {} listening on {local}", config.name);

    let app = api::router(api::AppState {
        facts,
        vms,
        identity: Arc::new(identity),
    });
    tls_server::serve(listener, Arc::new(tls), app, shutdown).await;
    tracing::info!("kiln-node {} stopped", config.name);
    Ok(())
}

/// Sets up the image store (importing `--image-dir` images, registering the test guest) and
/// the VM supervisor, which re-attaches to the VMs still running from before.
async fn open_supervisor(
    data: &DataDir,
    node: &NodeName,
    facts: &kiln_node_client::wire::NodeFacts,
    options: &RunOptions,
    migration: vms::process::MigrationNet,
) -> anyhow::Result<vms::Supervisor> {
    use kiln_node_client::wire::TEST_GUEST_IMAGE;

    let vmm_bin = match &options.vmm_bin {
        // VMs are spawned from their own directories: make a relative path absolute now.
        Some(path) => std::path::absolute(path)
            .with_context(|| format!("cannot resolve --vmm-bin {}", path.display()))?,
        None => std::env::current_exe()
            .context(
                "cannot locate the kiln-node executable to find kiln-vmm beside it; pass --vmm-bin",
            )?
            .with_file_name("kiln-vmm"),
    };
    if !vmm_bin.is_file() {
        tracing::warn!(
            "kiln-vmm not found at {}; VMs cannot start until it is installed there (or pass --vmm-bin / KILN_VMM_BIN)",
            vmm_bin.display()
        );
    }
    let images = vms::ImageStore::new(data.path().join("images"));
    let given = options.test_guest.clone();
    let image_dirs = options.image_dirs.clone();
    let store = images.clone();
    let registered = tokio::task::spawn_blocking(move || {
        store.import_dirs(&image_dirs);
        let source = vms::images::find_test_guest(given.as_deref())?;
        Some((store.register(TEST_GUEST_IMAGE, &source), source))
    })
    .await
    .context("the image store task failed")?;
    match registered {
        Some((Ok(copied), source)) => tracing::info!(
            "image {TEST_GUEST_IMAGE}: {} {}",
            if copied { "registered from" } else { "up to date with" },
            source.display()
        ),
        Some((Err(e), _)) => tracing::warn!("cannot register the test guest: {e}"),
        None => tracing::warn!(
            "the Kiln test guest was not found (--test-guest, KILN_TEST_GUEST, /usr/share/kiln/{TEST_GUEST_IMAGE} or beside kiln-node); image {TEST_GUEST_IMAGE} is unavailable"
        ),
    }
    let supervisor = vms::Supervisor::open(vms::SupervisorConfig {
        node: node.clone(),
        vms_dir: data.path().join("vms"),
        vmm_bin,
        images,
        host: vms::HostLimits {
            memory_mib: facts.mem_total / (1024 * 1024),
            cpus: facts.cpus,
        },
        cgroups: match vms::cgroup::Cgroups::detect(Path::new("/sys/fs/cgroup"), node) {
            Ok(cgroups) => Some(cgroups),
            Err(why) => {
                tracing::warn!("VMs run without per-VM cgroups: {why}");
                None
            }
        },
        migration,
    })
    .await
    .context("cannot open the VM supervisor")?;
    Ok(supervisor)
}

/// Watches SIGINT and SIGTERM from now on — before the API listens, so a signal sent as soon
/// as the port answers is not lost — and completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot watch SIGINT/SIGTERM ({e}); stop the agent with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}
