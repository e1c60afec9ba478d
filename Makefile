# Kiln — the two commands are `make run` and `make test`; both set up what they need first.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo

.PHONY: run test build build-debug setup setup-e2e unit e2e lint fmt bench demo-clean guest

## make run: build (release) and start the server plus a three-node demo cluster on loopback.
run: build
	scripts/run-demo.sh target/release

## make test: lint, unit and integration tests, then browser tests against a real cluster.
test: setup-e2e lint unit e2e

setup:
	scripts/setup.sh build

setup-e2e:
	scripts/setup.sh e2e

build: setup guest
	$(CARGO) leptos build --release
	$(CARGO) build --release -p kiln-node -p kiln-vmm

build-debug: setup guest
	$(CARGO) leptos build
	$(CARGO) build -p kiln-node -p kiln-vmm

lint: setup guest
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd guest && $(CARGO) fmt -- --check && $(CARGO) clippy --release -- -D warnings

unit: setup guest
	$(CARGO) build -p kiln-node -p kiln-vmm
	$(CARGO) test --workspace

# cargo-leptos builds last, so the server binary the browser tests run is the one it built.
e2e: setup-e2e guest build-debug
	cd e2e && KILN_BIN_DIR=$(CURDIR)/target/debug npx playwright test

fmt:
	$(CARGO) fmt --all

## make guest: the Kiln test guest (no_std PVH ELF for x86_64-unknown-none, own workspace and
## target dir) -> target/guest/x86_64-unknown-none/release/kiln-test-guest. The kiln-vmm
## tests boot it (or the image named by $$KILN_TEST_GUEST).
guest:
	rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none
	cd guest && $(CARGO) build --release

## make bench: start latency (API → console banner, next to kiln-vmm alone and QEMU microvm),
## VMM memory overhead, 50-VM density, live migration (256 MiB–4 GiB, next to QEMU) and HA
## failover (node killed → banner on the new node) on a real cluster of release binaries
## (printed, not asserted; the run takes about 6 minutes once built; BENCH_ARGS="--only failover"
## for one table). Installs qemu-system-x86 if missing. See bench/README.md.
bench: guest
	bench/setup.sh
	$(CARGO) build --release -p kiln-server -p kiln-node -p kiln-vmm
	$(CARGO) build --release -p kiln-bench
	target/release/kiln-bench --bin-dir target/release \
		--guest target/guest/x86_64-unknown-none/release/kiln-test-guest $(BENCH_ARGS)

## Stop the demo cluster's VMs and remove its data (database, certificates, node data).
demo-clean:
	-[ -d data ] && pkill -TERM -f "$(CURDIR)/data/n[0-9]*/" ; true
	rm -rf data

.PHONY: guest-linux test-linux

## make guest-linux: a Linux guest from Debian packages (linux-image-cloud-amd64's bzImage,
## also unpacked to a vmlinux; busybox-static initramfs) -> target/images/kiln-linux{,-vmlinux}/
## {kernel,initrd,cmdline,image.json}. Fetched with apt-get download; nothing is installed.
guest-linux:
	scripts/guest-linux.sh

## make test-linux (opt-in): boot the Linux guest to its busybox prompt on a host with
## hardware virtualization (vmx/svm); elsewhere (e.g. PVM) it says why it skips that and only
## checks that the kernel is loaded and starts (its first console lines).
test-linux: guest guest-linux
	$(CARGO) test -p kiln-vmm --test linux_vm -- --ignored --nocapture --test-threads=1
