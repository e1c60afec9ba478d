#!/usr/bin/env bash
# make guest-linux: a Linux guest for kiln-vmm from Debian packages, without installing
# anything into the host.
#
#   kernel: linux-image-cloud-amd64 (the metapackage's current linux-image-*-cloud-amd64),
#           fetched with `apt-get download`, unpacked with `dpkg-deb -x`; its bzImage is used
#           as is, and also unpacked into the uncompressed vmlinux ELF (which kiln-vmm boots
#           through Linux's PVH entry).
#   initrd: busybox-static plus an /init that mounts /proc, /sys, /dev, loads the kernel's
#           ACPI button and evdev modules (copied from the kernel package) and starts busybox
#           acpid, so the power button (kiln-vmm's `shutdown`) powers the guest off, prints a
#           banner and starts a shell on ttyS0; a gzip'd cpio "newc" archive written by Python
#           (no cpio package needed).
#
# Output (target/images/ is gitignored; never commit images), two images:
#   target/images/kiln-linux/          the bzImage
#   target/images/kiln-linux-vmlinux/  the vmlinux ELF
# each with
#   kernel      the kernel image
#   initrd      initramfs (cpio.gz)
#   cmdline     default kernel command line (one line)
#   image.json  {"name","kind":"linux","kernel","initrd","cmdline",...}
#
# Usage: scripts/guest-linux.sh [OUT_ROOT]   (OUT_ROOT defaults to target/images)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out_root=${1:-$root/target/images}
name=kiln-linux
work=$out_root/.build-$name
cmdline='console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd'
banner='Kiln Linux guest'

need() { command -v "$1" >/dev/null || { echo "guest-linux: '$1' is required ($2)" >&2; exit 1; }; }
need apt-get "Debian/Ubuntu apt"
need apt-cache "Debian/Ubuntu apt"
need dpkg-deb "dpkg"
need python3 "writes the cpio archive"
need gzip "compresses the initramfs"

mkdir -p "$work"
cd "$work"

# The metapackage only depends on the versioned image package; resolve and fetch that one.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [[ -z $kpkg ]]; then
    echo "guest-linux: apt does not know linux-image-cloud-amd64; run 'apt-get update' first" >&2
    exit 1
fi
for pkg in "$kpkg" busybox-static; do
    if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
        echo "guest-linux: apt-get download $pkg"
        apt-get download "$pkg" 2>&1 >/dev/null | { grep -v "unsandboxed as root" >&2 || true; }
    fi
done

rm -rf kernel-root busybox-root initramfs
dpkg-deb -x "$(ls "${kpkg}"_*.deb | head -n1)" kernel-root
dpkg-deb -x "$(ls busybox-static_*.deb | head -n1)" busybox-root
vmlinuz=$(ls kernel-root/boot/vmlinuz-* | head -n1)
kver=${vmlinuz##*/vmlinuz-}

# --- initramfs ---------------------------------------------------------------------------
mkdir -p initramfs/{bin,sbin,dev,proc,sys,tmp,root,etc/acpi/PWRF,lib/modules,var/log,var/run}
cp busybox-root/bin/busybox initramfs/bin/busybox

# The power button: kiln-vmm's ACPI Generic Event Device notifies \_SB.PWRB (PNP0C0C); the
# kernel's ACPI button driver reports KEY_POWER on an input device, which busybox acpid reads
# from /dev/input/event*. Debian builds the button driver and evdev as modules, so /init
# loads them (neither depends on another module). A module the kernel has built in is not
# in the package and is skipped.
for mod in drivers/acpi/button drivers/input/evdev; do
    src=$(ls kernel-root/lib/modules/"$kver"/kernel/"$mod".ko* 2>/dev/null | head -n1 || true)
    dst=initramfs/lib/modules/${mod##*/}.ko
    case $src in
        "") echo "guest-linux: no $mod module in $kpkg (built in?)" ;;
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" >"$dst" ;;
        *.ko.zst) zstd -dc "$src" >"$dst" ;;
        *.ko.gz) gzip -dc "$src" >"$dst" ;;
        *) echo "guest-linux: $src: unknown module compression" >&2; exit 1 ;;
    esac
done
# busybox acpid maps KEY_POWER (value 1) to the action "PWRF/00000080" and runs that file
# in its config directory /etc/acpi. `poweroff -f` ends in ACPI S5 (the FADT's sleep control
# register), which kiln-vmm reports as a guest poweroff.
cat >initramfs/etc/acpi/PWRF/00000080 <<'EOF'
#!/bin/sh
echo "power button: powering off" >/dev/console
sync
poweroff -f
EOF
chmod 755 initramfs/etc/acpi/PWRF/00000080

cat >initramfs/init <<EOF
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
for m in /lib/modules/*.ko; do [ -e "\$m" ] && insmod "\$m"; done
# The input device node appears once devtmpfs has caught up (wait up to 2 s).
i=0
while [ ! -e /dev/input/event0 ] && [ \$i -lt 20 ]; do usleep 100000; i=\$((i + 1)); done
acpid -l /var/log/acpid.log || echo "acpid did not start: the power button does nothing"
echo
echo "$banner (kernel \$(uname -r), busybox \$(busybox | head -n1 | cut -d' ' -f2))"
echo "Type 'poweroff -f' or 'reboot -f' to end the VM; kiln-vmm's shutdown presses the power button."
export HOME=/root PS1='kiln-linux# '
while true; do
    setsid cttyhack sh -i </dev/ttyS0 >/dev/ttyS0 2>&1 || sh -i
    echo "shell exited; starting another"
done
EOF
chmod 755 initramfs/init

python3 - initramfs initrd.cpio <<'PY'
# Minimal cpio "newc" writer (what the kernel's initramfs unpacker reads), with
# /dev/console and /dev/ttyS0 device nodes so /init has a console before devtmpfs.
import os, stat, sys
src, dst = sys.argv[1], sys.argv[2]
ino = [1]
def entry(out, name, mode, data=b"", rdev=(0, 0), nlink=1):
    name_b = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino[0], mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
    ino[0] += 1
    out.write(hdr.encode() + name_b)
    out.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))
with open(dst, "wb") as out:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        if rel != ".":
            entry(out, rel, stat.S_IFDIR | 0o755, nlink=2)
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            r = os.path.normpath(os.path.join(rel, f))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entry(out, r, stat.S_IFLNK | 0o777, os.readlink(p).encode())
            else:
                with open(p, "rb") as fh:
                    entry(out, r, stat.S_IFREG | (st.st_mode & 0o7777), fh.read())
    entry(out, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entry(out, "dev/ttyS0", stat.S_IFCHR | 0o660, rdev=(4, 64))
    entry(out, "TRAILER!!!", 0)
PY
gzip -9n <initrd.cpio >initrd.cpio.gz

# --- kernel ------------------------------------------------------------------------------
# The bzImage as is; the vmlinux unpacked from it (what the kernel's scripts/extract-vmlinux
# does), unless already done for this kernel.
if [[ ! -s vmlinux-$kver.img ]]; then
    # The setup header says where the compressed payload is; Debian's cloud kernel uses LZ4
    # (legacy frame), decoded here in Python; zstd, xz and gzip go through their tools.
    python3 - "$vmlinuz" "vmlinux-$kver.img" <<'PY'
import shutil, struct, subprocess, sys
data = open(sys.argv[1], "rb").read()
setup = ((data[0x1f1] or 4) + 1) * 512
offset, length = struct.unpack_from("<II", data, 0x248)
payload = data[setup + offset:setup + offset + length]

def lz4_legacy(src):
    out, pos = bytearray(), 4
    while pos + 4 <= len(src):
        size = struct.unpack_from("<I", src, pos)[0]
        pos += 4
        if size == 0x184C2102:  # a concatenated frame starts again
            continue
        block, pos, i = src[pos:pos + size], pos + size, 0
        while i < len(block):
            token = block[i]; i += 1
            lit = token >> 4
            if lit == 15:
                while True:
                    b = block[i]; i += 1; lit += b
                    if b != 255: break
            out += block[i:i + lit]; i += lit
            if i >= len(block): break
            dist = block[i] | block[i + 1] << 8; i += 2
            mlen = token & 15
            if mlen == 15:
                while True:
                    b = block[i]; i += 1; mlen += b
                    if b != 255: break
            mlen += 4
            start = len(out) - dist
            while mlen > 0:
                chunk = out[start:start + min(mlen, dist)]
                out += chunk; start += len(chunk); mlen -= len(chunk)
        if size < 8 << 20 and len(out) % (8 << 20):
            break  # the last (short) block: what follows is the appended size field
    return bytes(out)

tools = {b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ": "xz", b"\x1f\x8b": "gzip"}
if payload[:4] == b"\x02\x21\x4c\x18":
    elf = lz4_legacy(payload)
else:
    tool = next((t for m, t in tools.items() if payload.startswith(m)), None)
    if tool is None or shutil.which(tool) is None:
        sys.exit("guest-linux: payload %s needs a decompressor that is not here" % payload[:4].hex())
    elf = subprocess.run([tool, "-dc"], input=payload, capture_output=True).stdout
if elf[:4] != b"\x7fELF":
    sys.exit("guest-linux: the unpacked payload is not an ELF file")
open(sys.argv[2], "wb").write(elf)
PY
fi

write_image() { # name kernel-file kind
    local out=$out_root/$1
    mkdir -p "$out"
    install -m 644 "$2" "$out/kernel"
    install -m 644 initrd.cpio.gz "$out/initrd"
    echo "$cmdline" >"$out/cmdline"
    cat >"$out/image.json" <<EOF
{
  "name": "$1",
  "kind": "linux",
  "description": "Debian $kver ($3) with a busybox initramfs; shell on ttyS0",
  "kernel": "kernel",
  "initrd": "initrd",
  "cmdline": "$cmdline",
  "min_memory_mib": 256
}
EOF
    echo "guest-linux: $out: kernel ($3, $kver, $(stat -c %s "$out/kernel") bytes)," \
        "initrd ($(stat -c %s "$out/initrd") bytes)"
}
write_image "$name" "$vmlinuz" bzImage
write_image "$name-vmlinux" "vmlinux-$kver.img" vmlinux
