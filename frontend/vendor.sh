#!/usr/bin/env bash
# Copies the browser libraries the web UI serves (xterm.js for the VM console) from npm into
# frontend/public/vendor, which cargo-leptos copies into the site. Versions are pinned in
# frontend/package.json and frontend/package-lock.json; nothing comes from a CDN.
# Idempotent and quick when done: `npm ci` runs only when the lockfile changed.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[vendor] npm ci in frontend/ (from package-lock.json)"
  npm ci --no-audit --no-fund --silent
fi

mkdir -p public/vendor
xterm=node_modules/@xterm/xterm
# The source map is not shipped, so drop the comment that points at it.
sed '/^\/\/# sourceMappingURL=/d' "$xterm/lib/xterm.js" > public/vendor/xterm.js.tmp
mv public/vendor/xterm.js.tmp public/vendor/xterm.js
cp "$xterm/css/xterm.css" public/vendor/xterm.css
cp "$xterm/LICENSE" public/vendor/xterm.LICENSE
