//! A VM: KVM setup, the vCPU threads and the lifecycle every control request goes through.
//!
//! The lifecycle lives in one mutex + condvar ([`VmShared`]). vCPU threads pass a gate
//! before each KVM_RUN; `pause` flips the state and kicks the threads with a real-time
//! signal until every one of them is parked in the gate (repeated, because a kick that lands
//! just before KVM_RUN is lost).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vmm_sys_util::signal::Killable;

use crate::boot::{self, acpi, mptable, BootSource};
use crate::console::Console;
use crate::control::protocol::{VcpuStats, VmStats, VmStatus, PROTOCOL_VERSION};
use crate::devices::{DeviceError, Devices};
use crate::memory::{self, GuestMemory, MemoryError};
use crate::state::{transition, StateEvent, StopReason, TransitionError, VmState};
use crate::vcpu::{self, VcpuCounters, VcpuError};
use crate::{cpuid, stats};

/// How a VM is built.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// vCPU count.
    pub vcpus: u8,
    /// What to boot; `None` for the target of an incoming migration (memory and vCPU state
    /// arrive over the migration stream instead).
    pub boot: Option<BootSource>,
    /// Start with the vCPUs held (resume to run).
    pub start_paused: bool,
    /// Console scroll-back in bytes.
    pub scrollback_bytes: usize,
    /// Copy guest console output to stdout too.
    pub console_stdout: bool,
}

/// Errors while building or controlling a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm cannot be opened.
    #[error("cannot open /dev/kvm (is KVM available, and may this user use it?)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// A VM-level ioctl failed.
    #[error("cannot {what}")]
    Kvm {
        /// What was being done.
        what: &'static str,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// vCPU count out of range.
    #[error("{requested} vCPUs requested; this host allows 1 to {max}")]
    VcpuCount {
        /// Asked for.
        requested: u8,
        /// Limit (KVM and MP table).
        max: usize,
    },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Loading the guest.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// CPUID.
    #[error(transparent)]
    Cpuid(#[from] cpuid::CpuidError),
    /// Devices.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// vCPUs.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// A request that the state does not allow.
    #[error(transparent)]
    State(#[from] TransitionError),
    /// Shutdown of a paused VM.
    #[error("the VM is paused, so the guest cannot shut itself down; resume it first or use stop")]
    ShutdownWhilePaused,
    /// The power button could not be pressed.
    #[error("cannot press the power button")]
    PowerButton(#[source] std::io::Error),
}

/// What the gate tells a vCPU thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Enter KVM_RUN.
    Run,
    /// The VM has stopped: leave the thread.
    Exit,
}

struct Lifecycle {
    state: VmState,
    /// Auto-converge: vCPUs are held in the gate while this is set (state stays Running).
    throttled: bool,
    stop_reason: Option<StopReason>,
    /// vCPU threads waiting in the gate while paused.
    parked: usize,
    /// vCPU threads that have ended.
    exited: usize,
    last_pause: Option<Duration>,
    started: Option<Instant>,
}

/// Everything the vCPU threads and the control server share.
pub struct VmShared {
    config: VmConfig,
    lifecycle: Mutex<Lifecycle>,
    changed: Condvar,
    devices: Devices,
    console: Console,
    counters: Vec<Arc<VcpuCounters>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    memory: GuestMemory,
    /// The vCPU fds. Each vCPU thread locks its own around KVM_RUN only, so migration can
    /// read and write the state of a vCPU parked in the gate.
    vcpus: Vec<Arc<Mutex<VcpuFd>>>,
    /// MSRs a migration carries (KVM's list, filtered to the readable ones at start).
    msr_indices: Vec<u32>,
    /// Outgoing or incoming migration, if any (progress and last result).
    migration: crate::migration::MigrationSlot,
    // Kept for the lifetime of the VM: the fds own the memory slots and vCPUs.
    vm: VmFd,
    _kvm: Kvm,
}

/// Kick period while waiting for vCPUs to leave KVM_RUN.
const KICK_PERIOD: Duration = Duration::from_millis(1);
/// How long `stop` waits for vCPU threads to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A running VM.
pub struct Vm {
    shared: Arc<VmShared>,
}

impl Vm {
    /// Build the VM and start its vCPU threads (held in the gate if `start_paused`).
    pub fn start(config: VmConfig) -> Result<Vm, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let max_vcpus = kvm.get_max_vcpus().min(mptable::MAX_VCPUS);
        if config.vcpus == 0 || usize::from(config.vcpus) > max_vcpus {
            return Err(VmError::VcpuCount {
                requested: config.vcpus,
                max: max_vcpus,
            });
        }
        let memory = memory::create(config.memory_mib)?;
        let kvm_err = |what| move |source| VmError::Kvm { what, source };
        let vm = kvm.create_vm().map_err(kvm_err("create a KVM VM"))?;
        vm.set_tss_address(0xfffb_d000)
            .map_err(kvm_err("set the TSS address"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("create the in-kernel irqchip"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(kvm_err("create the in-kernel PIT"))?;
        memory::register(&vm, &memory)?;

        let entry = match &config.boot {
            Some(boot) => {
                let entry = boot.load(&memory)?;
                mptable::write(&memory, usize::from(config.vcpus))?;
                acpi::write(&memory, usize::from(config.vcpus))?;
                Some(entry)
            }
            None => None,
        };

        let console = Console::new(config.scrollback_bytes, config.console_stdout);
        let devices = Devices::new(&vm, console.clone())?;
        let base_cpuid = cpuid::base(&kvm)?;
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            vcpus.push(Arc::new(Mutex::new(vcpu::create(
                &vm,
                &base_cpuid,
                id,
                config.vcpus,
                entry.as_ref(),
            )?)));
        }
        vcpu::install_kick_handler()?;
        // Probed once, before any vCPU runs, so that the stop-and-copy does not pay for it.
        let msr_indices = match vcpus.first() {
            Some(fd) => {
                let fd = fd.lock().unwrap_or_else(|e| e.into_inner());
                crate::migration::state::readable_msrs(&kvm, &fd).unwrap_or_default()
            }
            None => Vec::new(),
        };

        let state = if config.start_paused {
            VmState::Paused
        } else {
            VmState::Running
        };
        let shared = Arc::new(VmShared {
            counters: (0..config.vcpus).map(|_| Arc::default()).collect(),
            config,
            lifecycle: Mutex::new(Lifecycle {
                state,
                throttled: false,
                stop_reason: None,
                parked: 0,
                exited: 0,
                last_pause: None,
                started: (state == VmState::Running).then(Instant::now),
            }),
            changed: Condvar::new(),
            devices,
            console,
            threads: Mutex::new(Vec::new()),
            memory,
            vcpus: vcpus.clone(),
            msr_indices,
            migration: Default::default(),
            vm,
            _kvm: kvm,
        });
        for (id, fd) in vcpus.into_iter().enumerate() {
            let id = id as u8;
            let thread_shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || vcpu::run(fd, id, thread_shared))
                .map_err(|source| VcpuError::Spawn { id, source })?;
            shared.threads().push(handle);
        }
        Ok(Vm { shared })
    }

    /// The shared part, for the control server.
    pub fn shared(&self) -> Arc<VmShared> {
        self.shared.clone()
    }

    /// Block until the VM stops; end the vCPU threads; return why it stopped.
    pub fn wait(self) -> StopReason {
        let reason = self.shared.wait_stopped();
        self.shared.end_vcpu_threads();
        self.shared.console.close();
        reason
    }
}

impl VmShared {
    fn lock(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn counters(&self, id: u8) -> Arc<VcpuCounters> {
        self.counters[usize::from(id)].clone()
    }

    pub(crate) fn devices(&self) -> &Devices {
        &self.devices
    }

    /// The KVM VM fd (irqchip, PIT, clock, dirty log).
    pub(crate) fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// Guest memory.
    pub(crate) fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    /// The vCPU fds (lock one only while the VM is paused, or it waits for KVM_RUN to end).
    pub(crate) fn vcpu_fds(&self) -> &[Arc<Mutex<VcpuFd>>] {
        &self.vcpus
    }

    /// The MSRs a migration carries.
    pub(crate) fn migratable_msrs(&self) -> &[u32] {
        &self.msr_indices
    }

    /// How the VM was built.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The migration slot (progress, cancel flag, last result).
    /// A migration target: the TCP address it listens on, reported by [`Self::status`].
    pub fn set_migration_listen(&self, addr: String) {
        self.migration.set_listen(addr);
    }

    pub(crate) fn migration(&self) -> &crate::migration::MigrationSlot {
        &self.migration
    }

    /// Auto-converge: hold (true) or release (false) the vCPUs without changing the power
    /// state. Does not wait for the vCPUs to park.
    pub(crate) fn set_throttle(&self, on: bool) {
        let mut l = self.lock();
        if l.throttled == on {
            return;
        }
        l.throttled = on;
        self.changed.notify_all();
        drop(l);
        if on {
            self.kick_all();
        }
    }

    /// True while the power state is Running.
    pub fn is_running(&self) -> bool {
        self.lock().state == VmState::Running
    }

    /// The console hub.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Called by a vCPU thread before each KVM_RUN: parks while paused.
    pub(crate) fn gate(&self) -> Gate {
        let mut l = self.lock();
        loop {
            match l.state {
                VmState::Running if !l.throttled => return Gate::Run,
                VmState::Stopped => return Gate::Exit,
                VmState::Running | VmState::Paused => {
                    l.parked += 1;
                    self.changed.notify_all();
                    while l.state == VmState::Paused || (l.state == VmState::Running && l.throttled)
                    {
                        l = self.changed.wait(l).unwrap_or_else(|e| e.into_inner());
                    }
                    l.parked -= 1;
                }
            }
        }
    }

    pub(crate) fn vcpu_exited(&self) {
        let mut l = self.lock();
        l.exited += 1;
        self.changed.notify_all();
    }

    fn kick_all(&self) {
        let signal = vcpu::kick_signal();
        for t in self.threads().iter() {
            // ESRCH for a thread that has already ended is fine.
            let _ = t.kill(signal);
        }
    }

    /// Current state.
    pub fn status(&self) -> VmStatus {
        let l = self.lock();
        VmStatus {
            protocol_version: PROTOCOL_VERSION,
            state: l.state,
            stop_reason: l.stop_reason.clone(),
            migration: self.migration.snapshot().map(Box::new),
            vcpus: self.config.vcpus,
            memory_mib: self.config.memory_mib,
            uptime_ms: l.started.map_or(0, |s| s.elapsed().as_millis() as u64),
            pid: std::process::id(),
            migration_listen: self.migration.listen(),
        }
    }

    /// Hold every vCPU outside KVM_RUN; returns once all are parked.
    pub fn pause(&self) -> Result<VmStatus, VmError> {
        let t0 = Instant::now();
        let mut l = self.lock();
        let was = l.state;
        l.state = transition(was, l.stop_reason.as_ref(), &StateEvent::Pause)?;
        if was == VmState::Paused {
            drop(l);
            return Ok(self.status());
        }
        let vcpus = usize::from(self.config.vcpus);
        while l.parked + l.exited < vcpus && l.state == VmState::Paused {
            drop(l);
            self.kick_all();
            l = self.lock();
            l = self
                .changed
                .wait_timeout(l, KICK_PERIOD)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        l.last_pause = Some(t0.elapsed());
        drop(l);
        Ok(self.status())
    }

    /// Let the vCPUs run again.
    pub fn resume(&self) -> Result<VmStatus, VmError> {
        let mut l = self.lock();
        l.state = transition(l.state, l.stop_reason.as_ref(), &StateEvent::Resume)?;
        l.started.get_or_insert_with(Instant::now);
        self.changed.notify_all();
        drop(l);
        Ok(self.status())
    }

    /// Mark the VM stopped (first reason wins) and wake everyone; does not wait.
    pub fn request_stop(&self, reason: StopReason) {
        let mut l = self.lock();
        if l.state != VmState::Stopped {
            l.state = VmState::Stopped;
            l.stop_reason = Some(reason);
            self.changed.notify_all();
        }
    }

    /// Stop now and wait for the vCPU threads to leave KVM_RUN.
    pub fn stop(&self, reason: StopReason) -> StopReason {
        self.request_stop(reason);
        self.end_vcpu_threads();
        self.stop_reason_or(StopReason::StopRequested)
    }

    fn stop_reason_or(&self, fallback: StopReason) -> StopReason {
        self.lock().stop_reason.clone().unwrap_or(fallback)
    }

    /// Press the power button; stop the VM if the guest has not powered off in `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> Result<StopReason, VmError> {
        {
            let l = self.lock();
            match l.state {
                VmState::Paused => return Err(VmError::ShutdownWhilePaused),
                VmState::Stopped => {
                    return Err(TransitionError::AlreadyStopped(
                        l.stop_reason.clone().unwrap_or(StopReason::StopRequested),
                    )
                    .into())
                }
                VmState::Running => {}
            }
        }
        self.devices
            .press_power_button()
            .map_err(VmError::PowerButton)?;
        let deadline = Instant::now() + timeout;
        let mut l = self.lock();
        while l.state != VmState::Stopped {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            l = self
                .changed
                .wait_timeout(l, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(l);
        let timeout_ms = timeout.as_millis() as u64;
        Ok(self.stop(StopReason::ShutdownTimedOut { timeout_ms }))
    }

    /// Block until the state is Stopped.
    pub fn wait_stopped(&self) -> StopReason {
        let mut l = self.lock();
        while l.state != VmState::Stopped {
            l = self.changed.wait(l).unwrap_or_else(|e| e.into_inner());
        }
        l.stop_reason.clone().unwrap_or(StopReason::StopRequested)
    }

    /// Wait until the VM has stopped or `timeout` passes; true if stopped.
    pub fn wait_stopped_for(&self, timeout: Duration) -> bool {
        let l = self.lock();
        let (l, _) = self
            .changed
            .wait_timeout_while(l, timeout, |l| l.state != VmState::Stopped)
            .unwrap_or_else(|e| e.into_inner());
        l.state == VmState::Stopped
    }

    /// Kick vCPU threads until every one has ended (bounded by STOP_WAIT).
    fn end_vcpu_threads(&self) {
        let deadline = Instant::now() + STOP_WAIT;
        let vcpus = usize::from(self.config.vcpus);
        let mut l = self.lock();
        while l.exited < vcpus && Instant::now() < deadline {
            drop(l);
            self.kick_all();
            l = self.lock();
            l = self
                .changed
                .wait_timeout(l, KICK_PERIOD)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Counters.
    pub fn stats(&self) -> VmStats {
        let (state, uptime_ms, last_pause_us) = {
            let l = self.lock();
            (
                l.state,
                l.started.map_or(0, |s| s.elapsed().as_millis() as u64),
                l.last_pause.map(|d| d.as_micros() as u64),
            )
        };
        let vcpus: Vec<VcpuStats> = self
            .counters
            .iter()
            .enumerate()
            .map(|(id, c)| VcpuStats {
                id: id as u8,
                cpu_time_ns: stats::thread_cpu_ns(c.tid.load(std::sync::atomic::Ordering::Relaxed)),
                exits: c.exits(),
            })
            .collect();
        let exits = vcpus
            .iter()
            .fold(Default::default(), |acc: crate::protocol::ExitCounts, v| {
                acc.add(&v.exits)
            });
        let rss_bytes = stats::rss_bytes();
        let guest_resident_bytes = memory::resident_bytes(&self.memory);
        VmStats {
            state,
            uptime_ms,
            vcpus,
            exits,
            rss_bytes,
            guest_memory_bytes: memory::size(&self.memory),
            guest_resident_bytes,
            vmm_overhead_bytes: rss_bytes.saturating_sub(guest_resident_bytes),
            last_pause_us,
            console_readers: self.console.readers(),
            migration: self.migration.snapshot().map(Box::new),
        }
    }

    /// Console input for the guest.
    pub fn console_input(&self, bytes: &[u8]) {
        self.devices.serial_input(bytes);
    }
}
