//! Live migration between two real kiln-vmm processes on /dev/kvm, over a Unix socket.
//! Needs `make guest` first. The tests run one at a time (a lock), so that the figures they
//! print (`--nocapture`) are not skewed by each other on a small machine.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_vmm::protocol::{MigrationPhase, MigrationStatus, VmState};
use support::{GuestConsole, TempDir, TestVm, PROMPT};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guest's page word (guest/src/memtest.rs), computed independently here.
fn page_word(seed: u64, gen: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(gen.wrapping_mul(0xd1b5_4a32_d192_ed03))
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Checksum of a pattern of `pages` pages after `passes` full dirty passes and `cursor`
/// pages of the next one.
fn pattern_checksum(seed: u64, pages: u64, passes: u64, cursor: u64) -> u64 {
    (0..pages).fold(0u64, |sum, i| {
        sum.wrapping_add(page_word(seed, passes + u64::from(i < cursor), i))
    })
}

fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn ticks(console: &mut GuestConsole) -> u64 {
    let out = console.run("ticks");
    let line = out
        .iter()
        .find(|l| l.starts_with("ticks "))
        .expect("a ticks line");
    numbers(line)[0]
}

/// A migration target: `kiln-vmm --migrate-receive <dir>/migrate.sock`.
struct Target {
    vm: TestVm,
    listen: String,
    _dir: TempDir,
}

fn start_target(memory_mib: u64) -> Target {
    let dir = TempDir::new("target");
    let listen = dir.path().join("migrate.sock");
    let listen = listen.to_str().expect("utf-8 path").to_string();
    let vm = TestVm::start_with(&[
        "--migrate-receive".as_ref(),
        listen.as_ref(),
        "--memory-mib".as_ref(),
        memory_mib.to_string().as_ref(),
        "--vcpus".as_ref(),
        "1".as_ref(),
    ]);
    assert_eq!(
        vm.control().status().expect("target status").state,
        VmState::Paused,
        "a migration target waits paused"
    );
    Target {
        vm,
        listen,
        _dir: dir,
    }
}

fn print_report(what: &str, s: &MigrationStatus) {
    let ratio = s.bytes_transferred as f64 / s.guest_memory_bytes as f64;
    println!(
        "[{what}] phase {:?}: total {} ms, downtime {} us (target restore {} us), \
         {} rounds, {} bytes sent = {ratio:.3} x guest memory ({} MiB)",
        s.phase,
        s.total_ms.unwrap_or(s.elapsed_ms),
        s.downtime_us.unwrap_or(0),
        s.restore_us.unwrap_or(0),
        s.rounds.len(),
        s.bytes_transferred,
        s.guest_memory_bytes >> 20,
    );
    for r in &s.rounds {
        println!(
            "[{what}]   round {:>3}: {:>6} pages + {:>6} zero, {:>10} bytes in {:>7} us, \
             {:>5} MiB/s, dirtied {:>6} pages ({} MiB/s), expected downtime {} us, throttle {}%",
            r.round,
            r.pages_sent,
            r.zero_pages,
            r.bytes_sent,
            r.duration_us,
            r.throughput_bytes_s >> 20,
            r.dirtied_pages,
            r.dirty_rate_bytes_s >> 20,
            r.expected_downtime_us,
            r.throttle_percent,
        );
    }
}

/// Start a migration and wait for its end.
fn migrate(source: &TestVm, to: &str, bwlimit: Option<u64>) -> MigrationStatus {
    let mut control = source.control();
    let started = control.migrate_send(to, 50, bwlimit).expect("migrate_send");
    assert_eq!(started.phase, MigrationPhase::Connecting);
    control
        .set_timeout(Some(Duration::from_secs(300)))
        .expect("timeout");
    control.migrate_status(true).expect("migrate_status wait")
}

/// Wait until the source's migration has sent at least `bytes`.
fn wait_for_transfer(source: &TestVm, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut control = source.control();
    loop {
        let s = control.migrate_status(false).expect("migrate_status");
        if s.bytes_transferred >= bytes {
            return;
        }
        assert!(!s.phase.is_final(), "migration ended early: {s:?}");
        assert!(Instant::now() < deadline, "no progress: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn migrated_guest_keeps_its_memory_and_its_ticks_go_on() {
    let _one = serial();
    // 256 MiB of pattern needs a bit more RAM: the pattern area starts above the image.
    const MEMORY_MIB: u64 = 320;
    const FILL_MIB: u64 = 256;
    const SEED: u64 = 4242;
    let mut source = TestVm::start(1, MEMORY_MIB);
    let mut console = source.console();
    let pages = FILL_MIB * 256;
    let fill = console
        .run(&format!("mem fill {FILL_MIB} {SEED}"))
        .join("\n");
    let expected = format!("checksum {:#018x}", pattern_checksum(SEED, pages, 0, 0));
    assert!(fill.contains(&expected), "{fill:?}, want {expected}");
    let ticks_before = ticks(&mut console);
    console.send_line("dirty 20");
    console.expect("press any key to stop", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));

    let target = start_target(MEMORY_MIB);
    let status = migrate(&source, &target.listen, None);
    print_report("256 MiB pattern, dirty 20 MiB/s", &status);
    assert_eq!(status.phase, MigrationPhase::Completed, "{status:?}");
    assert!(status.downtime_us.is_some());

    // The source has handed over and exits.
    let code = source.wait_exit(Duration::from_secs(10));
    assert_eq!(code.code(), Some(0), "source stderr: {}", source.stderr());
    assert!(source.stderr().contains("migrated to"));

    // On the target: stop `dirty` (any key), then verify against our own computation.
    let target_status = target.vm.control().status().expect("target status");
    assert_eq!(target_status.state, VmState::Running);
    let mut console = target.vm.attach_console();
    console.send_line("");
    let stopped = console.expect(PROMPT, Duration::from_secs(20));
    let generation = stopped
        .lines()
        .find(|l| l.contains("pattern at generation"))
        .unwrap_or_else(|| panic!("no generation line in {stopped:?}"));
    let (passes, cursor) = match numbers(generation)[..] {
        [p, c] => (p, c),
        _ => panic!("bad generation line {generation:?}"),
    };
    let verify = console.run("mem verify").join("\n");
    let expected = format!(
        "checksum {:#018x}",
        pattern_checksum(SEED, pages, passes, cursor)
    );
    assert!(verify.contains("verify ok"), "{verify:?}");
    assert!(verify.contains(&expected), "{verify:?}, want {expected}");
    let ticks_after = ticks(&mut console);
    assert!(
        ticks_after >= ticks_before,
        "ticks went back from {ticks_before} to {ticks_after}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let later = ticks(&mut console);
    assert!(later > ticks_after, "ticks stuck at {later} on the target");
    println!(
        "[integrity] pattern generation {passes} + {cursor} pages verified; ticks {ticks_before} → {ticks_after} → {later}"
    );
    let target_migration = target_status
        .migration
        .expect("target reports its migration");
    assert_eq!(target_migration.phase, MigrationPhase::Completed);
}

#[test]
fn idle_256_mib_guest_migrates_with_small_downtime() {
    let _one = serial();
    let mut source = TestVm::start(1, 256);
    let mut console = source.console();
    let before = ticks(&mut console);
    let mut target = start_target(256);
    let status = migrate(&source, &target.listen, None);
    print_report("256 MiB idle", &status);
    assert_eq!(status.phase, MigrationPhase::Completed, "{status:?}");
    assert_eq!(source.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let mut console = target.vm.attach_console();
    console.send_line("");
    console.expect(PROMPT, Duration::from_secs(20));
    assert!(ticks(&mut console) >= before);
    assert_eq!(
        console.run("echo still here"),
        vec!["still here".to_string()]
    );
    target.vm.control().stop().expect("stop target");
    target.vm.wait_exit(Duration::from_secs(10));
}

#[test]
fn cancelled_migration_leaves_the_vm_running_on_the_source() {
    let _one = serial();
    let source = TestVm::start(1, 128);
    let mut console = source.console();
    console.run("mem fill 100 1");
    let mut target = start_target(128);
    let mut control = source.control();
    control
        .migrate_send(&target.listen, 50, Some(20))
        .expect("migrate_send");
    wait_for_transfer(&source, 4 << 20);
    let cancelling = control.migrate_cancel().expect("migrate_cancel");
    assert!(!cancelling.phase.is_final());
    let status = control.migrate_status(true).expect("wait");
    assert_eq!(status.phase, MigrationPhase::Cancelled, "{status:?}");
    assert!(
        status
            .error
            .as_ref()
            .is_some_and(|e| e.contains("cancelled")),
        "{status:?}"
    );

    let exit = target.vm.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(1), "target: {}", target.vm.stderr());
    assert!(target.vm.stderr().contains("incoming migration failed"));
    assert_eq!(control.status().expect("status").state, VmState::Running);
    assert_eq!(console.run("echo alive"), vec!["alive".to_string()]);
    let verify = console.run("mem verify").join("\n");
    assert!(verify.contains("verify ok"), "{verify:?}");
}

#[test]
fn target_killed_mid_transfer_leaves_the_vm_running_on_the_source() {
    let _one = serial();
    let source = TestVm::start(1, 128);
    let mut console = source.console();
    console.run("mem fill 100 2");
    let mut target = start_target(128);
    let mut control = source.control();
    control
        .migrate_send(&target.listen, 50, Some(20))
        .expect("migrate_send");
    wait_for_transfer(&source, 4 << 20);
    target.vm.child.kill().expect("kill the target");
    let _ = target.vm.child.wait();
    let status = control.migrate_status(true).expect("wait");
    assert_eq!(status.phase, MigrationPhase::Failed, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains("migration stream failed"), "{error}");
    println!("[target killed] source reports: {error}");
    assert_eq!(control.status().expect("status").state, VmState::Running);
    assert_eq!(console.run("echo alive"), vec!["alive".to_string()]);
}

#[test]
fn guest_dirtying_faster_than_the_link_converges_by_throttling() {
    let _one = serial();
    let mut source = TestVm::start(1, 32);
    let mut console = source.console();
    console.run("mem fill 1 3");
    // 8 MiB/s of dirt over a 2 MiB/s link: only auto-converge can finish this.
    console.send_line("dirty 8");
    console.expect("press any key to stop", Duration::from_secs(10));
    let target = start_target(32);
    let status = migrate(&source, &target.listen, Some(2));
    print_report("dirty 8 MiB/s over bwlimit 2 MiB/s", &status);
    assert_eq!(status.phase, MigrationPhase::Completed, "{status:?}");
    assert!(
        status.rounds.iter().any(|r| r.throttle_percent > 0),
        "no round was throttled: {status:?}"
    );
    assert_eq!(source.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let mut console = target.vm.attach_console();
    console.send_line("");
    let stopped = console.expect(PROMPT, Duration::from_secs(20));
    assert!(stopped.contains("dirty stopped"), "{stopped:?}");
    let verify = console.run("mem verify").join("\n");
    assert!(verify.contains("verify ok"), "{verify:?}");
}

#[test]
fn target_with_other_memory_size_refuses_before_anything_moves() {
    let _one = serial();
    let source = TestVm::start(1, 64);
    let _console = source.console();
    let mut target = start_target(128);
    let status = migrate(&source, &target.listen, None);
    assert_eq!(status.phase, MigrationPhase::Failed, "{status:?}");
    let error = status.error.clone().unwrap_or_default();
    assert!(error.contains("64 MiB") && error.contains("128"), "{error}");
    assert!(status.rounds.is_empty(), "{status:?}");
    assert_eq!(target.vm.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert_eq!(
        source.control().status().expect("status").state,
        VmState::Running
    );
}

fn send_awaiting_commit(source: &TestVm, to: &str, commit_timeout_ms: u64) -> MigrationStatus {
    let mut control = source.control();
    control
        .migrate_send_with(&kiln_vmm::protocol::Request::MigrateSend {
            to: to.to_string(),
            downtime_ms: 50,
            bwlimit_mib_s: None,
            await_commit: true,
            commit_timeout_ms,
            tls: None,
        })
        .expect("migrate_send");
    control
        .set_timeout(Some(Duration::from_secs(300)))
        .expect("timeout");
    control.migrate_status(true).expect("migrate_status wait")
}

fn wait_state(vm: &TestVm, state: VmState, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while vm.control().status().expect("status").state != state {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn verify_on(target: &TestVm) {
    let mut on_target = target.attach_console();
    on_target.send_line("");
    on_target.expect(PROMPT, Duration::from_secs(20));
    let verify = on_target.run("mem verify").join("\n");
    assert!(verify.contains("verify ok"), "{verify:?}");
}

#[test]
fn a_handed_over_vm_runs_on_the_target_only_once_the_target_is_committed() {
    let _one = serial();
    let source = TestVm::start(1, 128);
    let mut console = source.console();
    console.run("mem fill 64 9");
    let target = start_target(128);
    let waiting = send_awaiting_commit(&source, &target.listen, 30_000);
    assert_eq!(waiting.phase, MigrationPhase::AwaitingCommit, "{waiting:?}");
    let mut control = source.control();
    assert_eq!(control.status().expect("status").state, VmState::Paused);
    // The commit belongs to the target, the handover to the source.
    assert!(control.migrate_commit().is_err());
    let handed = control.migrate_handover().expect("migrate_handover");
    assert_eq!(handed.phase, MigrationPhase::HandedOver, "{handed:?}");
    // Neither side runs the VM while the cluster records the new owner; nobody may resume
    // either copy by hand meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    let mut target_control = target.vm.control();
    assert_eq!(
        target_control.status().expect("target").state,
        VmState::Paused
    );
    assert_eq!(
        target_control.migrate_status(false).expect("target").phase,
        MigrationPhase::AwaitingCommit
    );
    assert!(
        target_control.resume().is_err(),
        "a waiting target resumed by hand"
    );
    assert!(
        control.resume().is_err(),
        "a handed-over source resumed by hand"
    );
    assert!(
        control.migrate_cancel().is_err(),
        "a handover was cancelled"
    );
    target_control.migrate_commit().expect("migrate_commit");
    wait_state(&target.vm, VmState::Running, "the target never resumed");
    // The source hears the target's Resumed frame and ends by itself.
    let done = control.migrate_wait(true);
    if let Ok(done) = done {
        assert_eq!(done.phase, MigrationPhase::Completed, "{done:?}");
        assert!(done.downtime_us.is_some(), "{done:?}");
    }
    verify_on(&target.vm);
}

#[test]
fn a_handover_that_never_comes_resumes_the_vm_on_the_source() {
    let _one = serial();
    let source = TestVm::start(1, 128);
    let mut console = source.console();
    let mut target = start_target(128);
    let waiting = send_awaiting_commit(&source, &target.listen, 500);
    assert_eq!(waiting.phase, MigrationPhase::AwaitingCommit, "{waiting:?}");
    let mut control = source.control();
    let ended = control.migrate_wait(true).expect("wait");
    assert_eq!(ended.phase, MigrationPhase::Failed, "{ended:?}");
    assert!(
        ended
            .error
            .as_ref()
            .is_some_and(|e| e.contains("no handover")),
        "{ended:?}"
    );
    // A late handover is refused, the VM runs here and the target has discarded it.
    assert!(control.migrate_handover().is_err());
    assert_eq!(control.status().expect("status").state, VmState::Running);
    assert_eq!(console.run("echo alive"), vec!["alive".to_string()]);
    let exit = target.vm.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(1), "target: {}", target.vm.stderr());
}

#[test]
fn a_handed_over_vm_whose_target_died_is_taken_back_and_runs_on() {
    let _one = serial();
    let source = TestVm::start(1, 128);
    let mut console = source.console();
    console.run("mem fill 32 5");
    let mut target = start_target(128);
    send_awaiting_commit(&source, &target.listen, 30_000);
    let mut control = source.control();
    control.migrate_handover().expect("handover");
    target.vm.child.kill().expect("kill the target");
    target.vm.wait_exit(Duration::from_secs(10));
    // Handed over, the source never resumes by itself, even with its target gone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(control.status().expect("status").state, VmState::Paused);
    assert_eq!(
        control.migrate_status(false).expect("status").phase,
        MigrationPhase::HandedOver
    );
    control.migrate_takeback().expect("takeback");
    let ended = control.migrate_wait(true).expect("wait");
    assert_eq!(ended.phase, MigrationPhase::Failed, "{ended:?}");
    assert!(
        ended
            .error
            .as_ref()
            .is_some_and(|e| e.contains("taken back")),
        "{ended:?}"
    );
    assert_eq!(control.status().expect("status").state, VmState::Running);
    let verify = console.run("mem verify").join("\n");
    assert!(verify.contains("verify ok"), "{verify:?}");
}

#[test]
fn a_target_whose_stream_broke_after_the_handover_still_takes_the_commit() {
    let _one = serial();
    let mut source = TestVm::start(1, 128);
    let mut console = source.console();
    console.run("mem fill 32 6");
    let target = start_target(128);
    send_awaiting_commit(&source, &target.listen, 30_000);
    source.control().migrate_handover().expect("handover");
    // The commit never travels the stream (here: the source dies with it).
    source.child.kill().expect("kill the source");
    source.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let mut target_control = target.vm.control();
    assert_eq!(
        target_control.migrate_status(false).expect("target").phase,
        MigrationPhase::AwaitingCommit
    );
    target_control
        .migrate_commit()
        .expect("commit through the control socket");
    wait_state(&target.vm, VmState::Running, "the target never resumed");
    verify_on(&target.vm);
}

#[test]
fn a_cancel_while_awaiting_commit_resumes_the_vm_on_the_source() {
    let _one = serial();
    let source = TestVm::start(1, 128);
    let mut console = source.console();
    let mut target = start_target(128);
    let waiting = send_awaiting_commit(&source, &target.listen, 30_000);
    assert_eq!(waiting.phase, MigrationPhase::AwaitingCommit, "{waiting:?}");
    let mut control = source.control();
    control.migrate_cancel().expect("cancel");
    let ended = control.migrate_wait(true).expect("wait");
    assert_eq!(ended.phase, MigrationPhase::Cancelled, "{ended:?}");
    assert_eq!(control.status().expect("status").state, VmState::Running);
    assert_eq!(console.run("echo alive"), vec!["alive".to_string()]);
    let exit = target.vm.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(1), "target: {}", target.vm.stderr());
}
