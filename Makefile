# Kiln — the two commands are `make run` and `make test`; both set up what they need first.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo

.PHONY: run test build build-debug setup setup-e2e unit e2e lint fmt bench demo-clean

## make run: build (release) and start the server plus a three-node demo cluster on loopback.
run: build
	scripts/run-demo.sh target/release

## make test: lint, unit and integration tests, then browser tests against a real cluster.
test: setup-e2e lint build-debug unit e2e

setup:
	scripts/setup.sh build

setup-e2e:
	scripts/setup.sh e2e

build: setup
	$(CARGO) leptos build --release
	$(CARGO) build --release -p kiln-node

build-debug: setup
	$(CARGO) leptos build
	$(CARGO) build -p kiln-node

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: build-debug
	$(CARGO) test --workspace

e2e: setup-e2e build-debug
	cd e2e && KILN_BIN_DIR=$(CURDIR)/target/debug npx playwright test

fmt:
	$(CARGO) fmt --all

## Remove the demo cluster's data (database, certificates, node data).
demo-clean:
	rm -rf data
