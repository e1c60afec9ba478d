//! The Kiln test guest on real /dev/kvm, driven through kiln-vmm's control socket.
//! Needs `make guest` first (the tests say so if the image is missing).

mod support;

use std::time::Duration;

use kiln_vmm::protocol::{StopReason, VmState};
use support::{run_vmm, TempDir, TestVm, PROMPT};

/// The guest's page word (guest/src/memtest.rs), computed independently here.
fn page_word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The guest's tick counter and its rate, from `ticks N (HZ Hz)`.
fn ticks(console: &mut support::GuestConsole) -> (u64, u64) {
    let out = console.run("ticks");
    let line = out
        .iter()
        .find(|l| l.starts_with("ticks "))
        .expect("a ticks line");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [count, hz] => (count, hz),
        _ => panic!("bad ticks line {line:?}"),
    }
}

#[test]
fn guest_boots_and_prints_its_banner() {
    let vm = TestVm::start(1, 64);
    assert_eq!(
        vm.control().status().expect("status").state,
        VmState::Running
    );
    let mut first = vm.attach_console();
    let boot = first.expect(PROMPT, Duration::from_secs(20));
    assert!(
        boot.contains("Kiln test guest 0.1.0 (1 vCPUs, 64 MiB)"),
        "banner: {boot:?}"
    );
}

#[test]
fn late_readers_get_the_scrollback_and_every_reader_sees_output() {
    let vm = TestVm::start(1, 64);
    let mut first = vm.console();
    let mut late = vm.attach_console();
    let replay = late.expect(PROMPT, Duration::from_secs(5));
    assert!(replay.contains("Kiln test guest"), "replay: {replay:?}");
    assert_eq!(first.run("echo both"), vec!["both".to_string()]);
    let seen = late.expect("both\r\n", Duration::from_secs(5));
    assert!(seen.contains("echo both"), "{seen:?}");
}

#[test]
fn shell_answers_echo() {
    let vm = TestVm::start(1, 64);
    let mut console = vm.console();
    assert_eq!(console.run("echo hello"), vec!["hello".to_string()]);
}

#[test]
fn mem_fill_then_verify_prints_the_checksum_computed_here() {
    let vm = TestVm::start(1, 128);
    let mut console = vm.console();
    let pages = 64 * 256;
    let expected = (0..pages).fold(0u64, |sum, i| sum.wrapping_add(page_word(7, i)));
    let expected = format!("checksum {expected:#018x}");
    let fill = console.run("mem fill 64 7").join("\n");
    assert!(fill.contains(&expected), "fill: {fill:?}, want {expected}");
    let verify = console.run("mem verify").join("\n");
    assert!(verify.contains("verify ok: 16384 pages"), "{verify:?}");
    assert!(
        verify.contains(&expected),
        "verify: {verify:?}, want {expected}"
    );
}

#[test]
fn pause_stops_the_tick_counter_and_resume_continues_it() {
    let vm = TestVm::start(1, 64);
    let mut console = vm.console();
    let mut control = vm.control();
    let (before, hz) = ticks(&mut console);
    assert_eq!(control.pause().expect("pause").state, VmState::Paused);
    assert_eq!(control.status().expect("status").state, VmState::Paused);
    std::thread::sleep(Duration::from_millis(1000)); // `hz` ticks if the guest ran
    assert_eq!(control.resume().expect("resume").state, VmState::Running);
    let (after_resume, _) = ticks(&mut console);
    assert!(
        after_resume - before <= hz / 4,
        "ticks went from {before} to {after_resume} across a 1 s pause at {hz} Hz"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (later, _) = ticks(&mut console);
    assert!(
        later >= after_resume + hz / 4,
        "ticks stuck at {later} (from {after_resume}) 500 ms after resume at {hz} Hz"
    );
    let stats = control.stats().expect("stats");
    assert!(stats.last_pause_us.is_some(), "{stats:?}");
}

#[test]
fn poweroff_ends_the_process_with_exit_status_0() {
    let mut vm = TestVm::start(1, 64);
    let mut console = vm.console();
    console.send_line("poweroff");
    let status = vm.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", vm.stderr());
    assert!(vm.stderr().contains("the guest powered off"));
    assert!(!vm.socket.exists(), "the control socket is removed on exit");
}

#[test]
fn two_vcpus_boot_and_the_banner_counts_them() {
    let vm = TestVm::start(2, 64);
    let boot = vm.attach_console().expect(PROMPT, Duration::from_secs(20));
    assert!(boot.contains("(2 vCPUs, 64 MiB)"), "banner: {boot:?}");
    assert!(!boot.contains("warning"), "{boot:?}");
    let stats = vm.control().stats().expect("stats");
    assert_eq!(stats.vcpus.len(), 2);
}

#[test]
fn shutdown_presses_the_power_button_and_the_guest_powers_off() {
    let mut vm = TestVm::start(1, 64);
    let _console = vm.console();
    let reason = vm
        .control()
        .shutdown(Duration::from_secs(10))
        .expect("shutdown");
    assert_eq!(reason, StopReason::GuestPoweroff);
    assert_eq!(vm.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn shutdown_reaches_the_guest_through_the_acpi_event_register_and_it_powers_off_by_itself() {
    let mut vm = TestVm::start(1, 64);
    let mut console = vm.console();
    let timeout = Duration::from_secs(20);
    let t0 = std::time::Instant::now();
    let reason = vm.control().shutdown(timeout).expect("shutdown");
    assert_eq!(
        reason,
        StopReason::GuestPoweroff,
        "the guest powered off itself (not {:?})",
        StopReason::ShutdownTimedOut {
            timeout_ms: timeout.as_millis() as u64
        }
    );
    assert!(t0.elapsed() < timeout, "took {:?}", t0.elapsed());
    // The guest prints this only when the GED event register had the power-button bit set.
    let said = console.expect("powering off", Duration::from_secs(5));
    assert!(said.contains("power button (ACPI GED event)"), "{said:?}");
    assert_eq!(vm.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        vm.stderr().contains("the guest powered off"),
        "stop reason in the log"
    );
}

#[test]
fn shutdown_of_a_guest_that_ignores_the_power_button_stops_it_after_the_timeout() {
    let mut vm = TestVm::start(1, 64);
    let mut console = vm.console();
    assert!(console.run("powerbutton off").is_empty());
    assert_eq!(
        console.run("powerbutton"),
        vec!["power button off".to_string()]
    );
    let timeout = Duration::from_millis(1500);
    let t0 = std::time::Instant::now();
    let reason = vm.control().shutdown(timeout).expect("shutdown");
    assert_eq!(reason, StopReason::ShutdownTimedOut { timeout_ms: 1500 });
    assert!(t0.elapsed() >= timeout, "stopped early: {:?}", t0.elapsed());
    // The press did reach the guest; it chose to ignore it.
    let said = console.expect("ignored", Duration::from_secs(5));
    assert!(said.contains("power button (ACPI GED event)"), "{said:?}");
    assert_eq!(vm.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        vm.stderr()
            .contains("the guest did not shut down within 1500 ms and was stopped"),
        "stop reason in the log"
    );
}

#[test]
fn stop_request_ends_the_vm_at_once() {
    let mut vm = TestVm::start(1, 64);
    let _console = vm.console();
    let reason = vm.control().stop().expect("stop");
    assert_eq!(reason, StopReason::StopRequested);
    assert_eq!(vm.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn shutdown_of_a_paused_vm_is_refused_with_advice() {
    let vm = TestVm::start(1, 64);
    let _console = vm.console();
    let mut control = vm.control();
    control.pause().expect("pause");
    let err = control
        .shutdown(Duration::from_millis(100))
        .expect_err("a paused guest cannot shut down");
    assert!(err.to_string().contains("resume it first"), "{err}");
}

#[test]
fn stats_report_vcpu_time_exits_and_vmm_overhead() {
    let vm = TestVm::start(1, 64);
    let mut console = vm.console();
    console.run("echo load");
    let stats = vm.control().stats().expect("stats");
    assert_eq!(stats.vcpus.len(), 1);
    assert!(stats.vcpus[0].cpu_time_ns > 0, "{stats:?}");
    assert!(stats.exits.io > 0, "{stats:?}");
    assert_eq!(stats.guest_memory_bytes, 64 << 20);
    assert!(
        stats.vmm_overhead_bytes > 0 && stats.vmm_overhead_bytes < 64 << 20,
        "{stats:?}"
    );
}

#[test]
fn missing_image_is_a_clear_error() {
    let dir = TempDir::new("missing");
    let sock = dir.path().join("s.sock");
    let (status, err) = run_vmm(&[
        "--kernel",
        "/nonexistent/kiln-guest",
        "--control-socket",
        sock.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot open kernel image /nonexistent/kiln-guest"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn non_elf_image_is_a_clear_error() {
    let dir = TempDir::new("notelf");
    let image = dir.path().join("image.bin");
    std::fs::write(&image, vec![0x42u8; 4096]).expect("write image");
    let sock = dir.path().join("s.sock");
    let (status, err) = run_vmm(&[
        "--kernel",
        image.to_str().expect("utf-8 path"),
        "--control-socket",
        sock.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("is not an ELF file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn absurd_memory_size_is_a_clear_error() {
    let dir = TempDir::new("hugemem");
    let sock = dir.path().join("s.sock");
    let image = support::guest_image();
    let (status, err) = run_vmm(&[
        "--kernel",
        image.to_str().expect("utf-8 path"),
        "--memory-mib",
        "1073741824",
        "--control-socket",
        sock.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("exceeds this host's memory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
