//! Linux guests (opt-in: `make test-linux`, which builds the images with `make guest-linux`).
//!
//! - On every KVM host: the bzImage (64-bit boot protocol) and the vmlinux (Linux's PVH
//!   entry) are loaded and start; the kernel's first lines show the command line, the E820
//!   map and the initramfs kiln-vmm handed over. Under PVM (these CI machines) this takes a
//!   minute or two per kernel, as the kernel runs emulated.
//! - On a host with hardware virtualization (vmx/svm): both boot to the busybox prompt, the
//!   shell answers, and `reboot -f` ends kiln-vmm with the reset status (2); `shutdown` on the
//!   control socket presses the ACPI power button, and the guest (busybox acpid) powers off
//!   through ACPI S5 before the timeout. Elsewhere those tests say why they skip.
//!
//! Images: `$KILN_LINUX_IMAGES` or target/images, each `<name>/{kernel,initrd,cmdline}`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use kiln_vmm::protocol::StopReason;
use support::TestVm;

const BZIMAGE: &str = "kiln-linux";
const VMLINUX: &str = "kiln-linux-vmlinux";
const MEMORY_MIB: u64 = 512;
const LINUX_PROMPT: &str = "kiln-linux# ";

struct LinuxImage {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
}

fn image(name: &str) -> LinuxImage {
    let root = std::env::var_os("KILN_LINUX_IMAGES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/images"),
        PathBuf::from,
    );
    let dir = root.join(name);
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap_or_else(|e| {
        panic!(
            "Linux guest image {} is missing ({e}): run `make guest-linux` first",
            dir.display()
        )
    });
    LinuxImage {
        kernel: dir.join("kernel"),
        initrd: dir.join("initrd"),
        cmdline: cmdline.trim().to_owned(),
    }
}

/// Why full Linux boots are skipped here, if they are.
fn no_hardware_virtualization() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hardware = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if hardware {
        return None;
    }
    let driver = ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| std::path::Path::new("/sys/module").join(m).exists())
        .unwrap_or("unknown");
    Some(format!(
        "this host has no hardware virtualization (no vmx/svm in /proc/cpuinfo; KVM module: \
         {driver}). Under a software hypervisor such as PVM the guest kernel runs emulated and \
         a Linux boot to the shell takes many minutes, so it is only checked on hardware KVM"
    ))
}

fn start(image: &LinuxImage, cmdline: &str, vcpus: u8) -> TestVm {
    TestVm::start_with(&[
        "--kernel".as_ref(),
        image.kernel.as_os_str(),
        "--initrd".as_ref(),
        image.initrd.as_os_str(),
        "--cmdline".as_ref(),
        cmdline.as_ref(),
        "--boot".as_ref(),
        "linux".as_ref(),
        "--memory-mib".as_ref(),
        MEMORY_MIB.to_string().as_ref(),
        "--vcpus".as_ref(),
        vcpus.to_string().as_ref(),
    ])
}

/// `[mem 0xSTART-0xEND]` → (start, end inclusive).
fn mem_range(line: &str) -> (u64, u64) {
    let inner = line
        .split("[mem ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("no [mem ...] in {line:?}"));
    let (a, b) = inner.split_once('-').expect("a range");
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    (hex(a), hex(b))
}

fn early_boot(name: &str) {
    let image = image(name);
    let cmdline = format!("{} earlyprintk=ttyS0", image.cmdline);
    let initrd_size = std::fs::metadata(&image.initrd).expect("initrd").len();
    let vm = start(&image, &cmdline, 1);
    let t0 = std::time::Instant::now();
    let mut console = vm.attach_console();
    let out = console.expect("RAMDISK: [mem ", Duration::from_secs(400));
    let out = out + &console.expect("]", Duration::from_secs(10));
    eprintln!(
        "{name}: kernel reported its initramfs after {:?}",
        t0.elapsed()
    );
    assert!(
        out.contains(&format!("Command line: {cmdline}")),
        "the kernel did not see kiln-vmm's command line: {out}"
    );
    let usable = out
        .lines()
        .find(|l| l.contains("BIOS-e820: [mem 0x0000000000100000-"))
        .unwrap_or_else(|| panic!("no E820 line for high memory: {out}"));
    assert_eq!(mem_range(usable).1 + 1, MEMORY_MIB << 20, "{usable}");
    assert!(usable.trim_end().ends_with("usable"), "{usable}");
    let ramdisk = out
        .lines()
        .find(|l| l.contains("RAMDISK: [mem "))
        .expect("RAMDISK line");
    let (start, end) = mem_range(ramdisk);
    assert_eq!(start % 4096, 0, "{ramdisk}");
    assert!(
        end + 1 - start >= initrd_size,
        "{ramdisk} vs {initrd_size} bytes"
    );
    assert!(end < MEMORY_MIB << 20, "{ramdisk}");
}

fn full_boot(name: &str) {
    if let Some(why) = no_hardware_virtualization() {
        eprintln!("SKIP {name} boot to the busybox prompt: {why}");
        return;
    }
    let image = image(name);
    let mut vm = start(&image, &image.cmdline, 2);
    let mut console = vm.attach_console();
    let boot = console.expect(LINUX_PROMPT, Duration::from_secs(120));
    assert!(boot.contains("Kiln Linux guest (kernel "), "{boot}");
    console.send_line("echo kiln-$((6*7))");
    console.expect("kiln-42", Duration::from_secs(20));
    console.expect(LINUX_PROMPT, Duration::from_secs(20));
    console.send_line("reboot -f");
    let status = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(2),
        "reboot through the i8042 ends kiln-vmm with the reset status: {}",
        vm.stderr()
    );
}

/// Boot to the prompt, then `shutdown`: the GED interrupt, `_EVT`, `Notify(\_SB.PWRB)`,
/// the ACPI button driver's KEY_POWER, busybox acpid, `poweroff -f`, ACPI S5.
fn power_button(name: &str) {
    if let Some(why) = no_hardware_virtualization() {
        eprintln!("SKIP {name} power button: {why}");
        return;
    }
    let image = image(name);
    let mut vm = start(&image, &image.cmdline, 1);
    let mut console = vm.attach_console();
    console.expect(LINUX_PROMPT, Duration::from_secs(120));
    let timeout = Duration::from_secs(60);
    let reason = vm.control().shutdown(timeout).expect("shutdown");
    assert_eq!(
        reason,
        StopReason::GuestPoweroff,
        "the guest should power off by itself within {timeout:?}"
    );
    console.expect("power button: powering off", Duration::from_secs(5));
    let status = vm.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", vm.stderr());
}

#[test]
#[ignore = "opt-in: make test-linux"]
fn bzimage_is_loaded_with_its_command_line_memory_map_and_initramfs() {
    early_boot(BZIMAGE);
}

#[test]
#[ignore = "opt-in: make test-linux"]
fn vmlinux_pvh_is_loaded_with_its_command_line_memory_map_and_initramfs() {
    early_boot(VMLINUX);
}

#[test]
#[ignore = "opt-in: make test-linux"]
fn bzimage_boots_to_the_busybox_prompt() {
    full_boot(BZIMAGE);
}

#[test]
#[ignore = "opt-in: make test-linux"]
fn vmlinux_boots_to_the_busybox_prompt() {
    full_boot(VMLINUX);
}

#[test]
#[ignore = "opt-in: make test-linux"]
fn bzimage_powers_off_when_shutdown_presses_the_power_button() {
    power_button(BZIMAGE);
}
