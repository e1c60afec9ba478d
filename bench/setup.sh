#!/usr/bin/env bash
# Idempotent set-up for `make bench`: QEMU (Debian's qemu-system-x86) for the microvm comparison.
# Installs only when missing, as scripts/setup.sh does.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! dpkg -s qemu-system-x86 >/dev/null 2>&1; then
  printf '\033[1m[bench setup]\033[0m installing Debian package qemu-system-x86\n'
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends qemu-system-x86
fi
[ -w /dev/kvm ] || { echo "[bench setup] /dev/kvm is missing or not writable: the benchmarks need KVM" >&2; exit 1; }
