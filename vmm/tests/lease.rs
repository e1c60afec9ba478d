//! The HA lease watchdog on real /dev/kvm: a VM started with a lease deadline stops itself
//! (exit status 4, reason "the HA lease expired") when the deadline passes without renewal,
//! keeps running while renewed, and ignores the clock once disarmed.

mod support;

use std::time::{Duration, Instant};

use kiln_vmm::lease::monotonic_now_ns;
use kiln_vmm::protocol::{StopReason, VmState};
use support::{guest_image, TestVm};

fn start_with_lease(deadline_ns: u64) -> TestVm {
    let image = guest_image();
    TestVm::start_with(&[
        "--kernel".as_ref(),
        image.as_os_str(),
        "--memory-mib".as_ref(),
        "64".as_ref(),
        "--lease-deadline-ns".as_ref(),
        deadline_ns.to_string().as_ref(),
    ])
}

fn in_ms(ms: u64) -> u64 {
    monotonic_now_ns() + ms * 1_000_000
}

#[test]
fn a_vm_whose_lease_is_not_renewed_fences_itself_at_the_deadline() {
    let started = Instant::now();
    let mut vm = start_with_lease(in_ms(1500));
    let mut console = vm.console();
    console.run("echo alive");
    let status = vm.wait_exit(Duration::from_secs(10));
    let lived = started.elapsed();
    assert_eq!(status.code(), Some(4), "exit status of a fenced VM");
    assert!(
        lived >= Duration::from_millis(1450),
        "stopped before the deadline: {lived:?}"
    );
    assert!(
        lived < Duration::from_millis(3000),
        "stopped long after the deadline: {lived:?}"
    );
    let err = vm.stderr();
    assert!(
        err.contains("VM stopped: the HA lease expired"),
        "stderr: {err}"
    );
}

#[test]
fn renewals_keep_the_vm_running_and_the_reply_says_how_long_is_left() {
    let mut vm = start_with_lease(in_ms(800));
    let mut control = vm.control();
    let until = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < until {
        let left = control.lease(Some(in_ms(800))).expect("lease renewal");
        assert!(
            matches!(left, Some(ms) if ms > 500 && ms <= 800),
            "{left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // 2 s > the 800 ms lease: only the renewals kept it alive.
    assert_eq!(control.status().expect("status").state, VmState::Running);
    // A deadline already in the past fences at once.
    control
        .lease(Some(monotonic_now_ns().saturating_sub(1)))
        .expect("lease");
    assert_eq!(vm.wait_exit(Duration::from_secs(5)).code(), Some(4));
}

#[test]
fn a_paused_vm_is_fenced_too_and_a_disarmed_lease_never_fires() {
    let mut fenced = start_with_lease(in_ms(600));
    fenced.control().pause().expect("pause");
    assert_eq!(fenced.wait_exit(Duration::from_secs(5)).code(), Some(4));

    let vm = start_with_lease(in_ms(600));
    let mut control = vm.control();
    assert_eq!(control.lease(None).expect("disarm"), None);
    std::thread::sleep(Duration::from_millis(1200));
    let status = control.status().expect("status");
    assert_eq!(status.state, VmState::Running);
    let reason = control.stop().expect("stop");
    assert_eq!(reason, StopReason::StopRequested);
}
