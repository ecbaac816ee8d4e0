#!/usr/bin/env bash
# Builds the worker into build/ with worker-build. Skips the build when the
# Rust sources, manifests, the files compiled into the Worker (the page in
# public/, the client library, docs/PROTOCOL.md) and the tools are unchanged
# since the last one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

inputs=(Cargo.toml Cargo.lock $(find src public -type f | sort) client/relay-client.js docs/PROTOCOL.md)
stamp="$( (cat "${inputs[@]}"; echo "$WASM_BINDGEN_BIN $WORKER_BUILD_BIN") | sha256sum | cut -c1-32)"
if [ -f build/index.js ] && [ -f build/.stamp ] && [ "$(cat build/.stamp)" = "$stamp" ]; then
  say "build is up to date"
  exit 0
fi
say "building the worker (release)"
"$WORKER_BUILD_BIN" --release >&2
printf '%s' "$stamp" > build/.stamp
