#!/usr/bin/env bash
# Start kiln-server on https://127.0.0.1:8006 and a demo cluster of three kiln-node agents on
# loopback, joining them on first start. Data lives under ./data and is reused on the next run.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
data=${KILN_DEMO_DATA:-data}
listen=${KILN_LISTEN:-127.0.0.1:8006}
url="https://$listen"
mkdir -p "$data"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "[kiln] stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "[kiln] stopped the server and the node agents; running VMs keep running (their kiln-vmm"
  echo "[kiln] processes outlive the agents by design) and the next 'make run' re-attaches them;"
  echo "[kiln] 'make demo-clean' stops them and deletes the demo data"
}
trap cleanup INT TERM EXIT

"$bin/kiln-server" run --listen "$listen" --data-dir "$data/server" --site-root target/site &
pids+=($!)

for _ in $(seq 1 100); do
  curl -ks -o /dev/null "$url/api2/kiln/ca" && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "[kiln] kiln-server exited; see above"; exit 1; }
  sleep 0.1
done

# Linux guests built by `make guest-linux` (optional) are imported into every node's store.
images=""
[ -d target/images ] && images="$PWD/target/images"

for i in 1 2 3; do
  dir="$data/n$i"
  if [ ! -f "$dir/node.json" ]; then
    token=$("$bin/kiln-server" join-token --data-dir "$data/server")
    "$bin/kiln-node" join "$url" "$token" --name "n$i" --listen "127.0.0.1:810$i" --data-dir "$dir"
  fi
  "$bin/kiln-node" run --data-dir "$dir" --vmm-bin "$bin/kiln-vmm" \
    --test-guest target/guest/x86_64-unknown-none/release/kiln-test-guest \
    ${images:+--image-dir "$images"} &
  pids+=($!)
done

if [ -n "${KILN_ADMIN_PASSWORD:-}" ]; then
  pwhint="the password in KILN_ADMIN_PASSWORD (used when the database was created)"
else
  pwhint="the password printed above at the first start"
fi
cat <<MSG

[kiln] Kiln is running: open $url  (self-signed certificate: accept it in the browser)
[kiln] log in as root@kiln with $pwhint
[kiln] demo nodes n1, n2, n3 on 127.0.0.1:8101-8103; data in $data/; Ctrl-C stops everything

MSG
wait -n "${pids[@]}" || true
