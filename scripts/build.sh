#!/usr/bin/env bash
# Builds the Worker crate (worker/) into build/ with worker-build. Skips the build when the
# Rust sources, manifests, the files compiled into the Worker (the page in
# public/, the client library, docs/PROTOCOL.md) and the tools are unchanged
# since the last one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

inputs=(Cargo.toml Cargo.lock core/Cargo.toml worker/Cargo.toml $(find core/src worker/src public -type f | sort) client/relay-client.js docs/PROTOCOL.md)
# The wasm's name section (function names) is stripped unless
# KEEP_WASM_NAMES=1 (npm run profile sets it, to name wasm functions): about
# 40 KiB less to upload, gzipped, on every deploy and cold start.
keep_names="${KEEP_WASM_NAMES:-0}"
stamp="$( (cat "${inputs[@]}"; echo "$WASM_BINDGEN_BIN $WORKER_BUILD_BIN names=$keep_names") | sha256sum | cut -c1-32)"
if [ -f build/index.js ] && [ -f build/.stamp ] && [ "$(cat build/.stamp)" = "$stamp" ]; then
  say "build is up to date"
  exit 0
fi
say "building the worker (release)"
# The Worker crate is worker/; its bundle goes to build/ at the top, where
# wrangler.toml looks for it.
(cd worker && "$WORKER_BUILD_BIN" --release --out-dir ../build >&2)
if [ "$keep_names" != 1 ]; then
  "$WASM_OPT_BIN" --strip-debug --all-features build/index_bg.wasm -o build/index_bg.wasm
fi
printf '%s' "$stamp" > build/.stamp
