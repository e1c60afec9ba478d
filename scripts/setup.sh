#!/usr/bin/env bash
# Idempotent set-up of everything `make run` and `make test` need on a fresh machine.
# Installs only from crates.io, npm and Debian; each step is skipped when already done.
# Usage: scripts/setup.sh [build|e2e]   (build: Rust toolchain pieces; e2e: also Chromium + npm)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
BINARYEN_VERSION=132.0.0
what=${1:-build}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

for t in wasm32-unknown-unknown x86_64-unknown-none; do
  rustup target list --installed | grep -qx "$t" || { log "adding rustup target $t"; rustup target add "$t"; }
done

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 14 minutes on 2 cores, once)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

# cargo-leptos would download wasm-bindgen and wasm-opt from GitHub unless they are on PATH.
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (must equal the crate in Cargo.lock)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"   # --locked fails for this crate
fi

# wasm-opt from npm's binaryen: Debian's binaryen 108 silently breaks the release wasm.
if [ ! -x tools/node_modules/.bin/wasm-opt ]; then
  log "installing wasm-opt (npm binaryen@$BINARYEN_VERSION) into tools/"
  (cd tools && npm ci --no-audit --no-fund --silent)
fi

# iasl (Debian's acpica-tools): kiln-vmm's unit tests disassemble its ACPI tables with it.
command -v iasl >/dev/null || apt_install acpica-tools

# xterm.js for the VM console (pinned in frontend/package-lock.json) -> frontend/public/vendor
frontend/vendor.sh

if [ "$what" = e2e ]; then
  apt_install chromium
  if [ ! -d e2e/node_modules/playwright-core ]; then
    log "installing e2e npm packages from e2e/package-lock.json"
    (cd e2e && npm ci --no-audit --no-fund --silent)
  fi
fi
log "ready"
