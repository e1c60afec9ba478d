//! `kiln-vmm`: run one VM; control it through its Unix socket.
//!
//! Exit status: 0 when the guest powered off or was stopped/shut down on request (or by
//! SIGTERM/SIGINT), 2 when the guest asked for a reset, 3 when the guest or the VMM crashed,
//! 1 when the VM could not be started (the message says why), 4 when its HA lease expired.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kiln_vmm::boot::{BootKind, BootSource};
use kiln_vmm::console::DEFAULT_SCROLLBACK;
use kiln_vmm::control::server::{ControlSocket, InFlight};
use kiln_vmm::lease::Lease;
use kiln_vmm::migration::protocol::Token;
use kiln_vmm::migration::receive;
use kiln_vmm::migration::tls::TlsFiles;
use kiln_vmm::migration::transport::{Listener, TlsListen};
use kiln_vmm::state::StopReason;
use kiln_vmm::vm::{Vm, VmConfig};

/// Run one KVM virtual machine, controlled through a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "kiln-vmm", version)]
struct Args {
    /// Guest image: an ELF with a PVH entry note (e.g. the Kiln test guest, `make guest`),
    /// or a Linux kernel (uncompressed vmlinux ELF or bzImage, e.g. `make guest-linux`).
    #[arg(long, value_name = "PATH", required_unless_present = "migrate_receive")]
    kernel: Option<PathBuf>,
    /// Initramfs for a Linux kernel (implies the Linux boot path).
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line (PVH start info or Linux zero page). Linux default:
    /// "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd".
    #[arg(long)]
    cmdline: Option<String>,
    /// Boot path: `auto` boots a bzImage, or any kernel given with --initrd, as Linux, and
    /// an ELF through its PVH note; `linux` also takes a vmlinux without a PVH note.
    #[arg(long, value_enum, default_value_t = BootArg::Auto)]
    boot: BootArg,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    memory_mib: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    /// Control socket path (created with mode 0600, removed on exit).
    #[arg(long, value_name = "PATH")]
    control_socket: PathBuf,
    /// Start with the vCPUs paused; `resume` starts the guest.
    #[arg(long)]
    start_paused: bool,
    /// Be the target of a live migration: listen on this Unix socket path (or host:port, or
    /// the first free port of host:low-high),
    /// take one source's VM (it must have the same --memory-mib and --vcpus), and run it
    /// once the source commits. No guest image is loaded. Exits with status 1 if the
    /// migration fails before the commit (the VM keeps running on the source).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["kernel", "initrd", "cmdline"])]
    migrate_receive: Option<String>,
    /// With --migrate-receive on host:port: accept the source only over mutual TLS, with
    /// this cluster CA certificate (PEM) as the only trust anchor.
    #[arg(long, value_name = "PATH", requires_all = ["migrate_receive", "tls_cert", "tls_key", "migrate_token_file"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), presented to the source.
    #[arg(long, value_name = "PATH", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// A file holding the one-time token the source must present (its agent gets it from
    /// this node's agent); read once at start.
    #[arg(long, value_name = "PATH", requires = "tls_ca")]
    migrate_token_file: Option<PathBuf>,
    /// Also copy the guest console to stdout.
    #[arg(long)]
    console_stdout: bool,
    /// HA lease: stop the VM (exit status 4, reason "the HA lease expired") once this
    /// absolute CLOCK_MONOTONIC time in nanoseconds passes without a renewal through the
    /// control socket's `lease` request. Without it the VM has no lease (not HA-managed).
    #[arg(long, value_name = "NS")]
    lease_deadline_ns: Option<u64>,
    /// Console scroll-back replayed to readers on attach, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SCROLLBACK)]
    scrollback_bytes: usize,
    /// Join this cgroup (a directory with a `cgroup.procs` file) before anything else, so
    /// all of the VM's memory and CPU time is accounted there. Repeatable (one per cgroup v1
    /// hierarchy).
    #[arg(long, value_name = "DIR")]
    cgroup: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BootArg {
    Auto,
    Pvh,
    Linux,
}

impl From<BootArg> for BootKind {
    fn from(arg: BootArg) -> Self {
        match arg {
            BootArg::Auto => BootKind::Auto,
            BootArg::Pvh => BootKind::Pvh,
            BootArg::Linux => BootKind::Linux,
        }
    }
}

static TERMINATING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_terminate(signal: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    TERMINATING_SIGNAL.store(signal, Ordering::SeqCst);
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kiln-vmm: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> anyhow::Result<i32> {
    let args = Args::parse();
    for cgroup in &args.cgroup {
        // "0": this process. Before guest memory exists, so none of it is charged elsewhere.
        let procs = cgroup.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, "0") {
            eprintln!(
                "kiln-vmm: warning: cannot join cgroup {}: {e}",
                cgroup.display()
            );
        }
    }
    let (boot, what) = match (&args.kernel, &args.migrate_receive) {
        (Some(kernel), _) => (
            Some(
                BootSource::resolve(
                    args.boot.into(),
                    kernel.clone(),
                    args.initrd.clone(),
                    args.cmdline.clone(),
                )
                .with_context(|| format!("cannot start a VM from {}", kernel.display()))?,
            ),
            format!("cannot start a VM from {}", kernel.display()),
        ),
        (None, Some(listen)) => (None, format!("cannot receive a VM on {listen}")),
        (None, None) => anyhow::bail!("give --kernel, or --migrate-receive for a migration target"),
    };
    // The migration listener exists before the control socket appears, so a supervisor
    // that waits for the control socket may start the source right away.
    let tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            let files = TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            };
            Some(
                files
                    .server_config()
                    .context("cannot set up mutual TLS for the migration")?,
            )
        }
        _ => None,
    };
    let token = match &args.migrate_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the migration token {}", path.display()))?;
            Some(Token(text.trim().to_owned()))
        }
        None => None,
    };
    let tls = tls.map(|config| TlsListen { config, token });
    let listener = match &args.migrate_receive {
        Some(listen) => Some(
            Listener::bind(listen, tls)
                .with_context(|| format!("cannot listen for a migration on {listen}"))?,
        ),
        None => None,
    };
    let socket = ControlSocket::bind(&args.control_socket)?;
    let vm = Vm::start(VmConfig {
        memory_mib: args.memory_mib,
        vcpus: args.vcpus,
        boot,
        start_paused: args.start_paused || listener.is_some(),
        scrollback_bytes: args.scrollback_bytes,
        console_stdout: args.console_stdout,
    })
    .context(what)?;
    let shared = vm.shared();
    // Known before the control socket answers its first status (its agent reads it there).
    if let Some(addr) = listener.as_ref().and_then(Listener::local_addr) {
        shared.set_migration_listen(addr);
    }
    let in_flight = Arc::new(InFlight::default());
    let lease = Lease::new(args.lease_deadline_ns);
    lease
        .watch(shared.clone())
        .context("cannot start the lease watchdog")?;
    socket
        .serve(shared.clone(), in_flight.clone(), lease)
        .context("cannot start the control socket thread")?;
    if let Some(listener) = listener {
        receive::serve(listener, shared.clone()).context("cannot start the migration receiver")?;
    }

    for signal in [libc::SIGTERM, libc::SIGINT] {
        vmm_sys_util::signal::register_signal_handler(signal, on_terminate)
            .context("cannot install the SIGTERM/SIGINT handler")?;
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let signal = TERMINATING_SIGNAL.load(Ordering::SeqCst);
            if signal != 0 {
                shared.request_stop(StopReason::Signal { signal });
                return;
            }
            if shared.wait_stopped_for(Duration::from_millis(200)) {
                return;
            }
        })
        .context("cannot start the signal thread")?;

    let reason = vm.wait();
    // Let a `stop`/`shutdown` request write its reply before the socket goes away.
    in_flight.wait_idle(Duration::from_secs(2));
    drop(socket);
    eprintln!("kiln-vmm: VM stopped: {reason}");
    Ok(reason.exit_code())
}
