#!/usr/bin/env bash
# Builds the worker into build/ with worker-build. Skips the build when the
# Rust sources, manifests and tools are unchanged since the last one.
# Also copies the client library (client/, its one source) into the assets
# directory, where the relay serves it as /relay-client.js.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

if ! cmp -s client/relay-client.js public/relay-client.js; then
  say "copying client/relay-client.js to public/"
  cp client/relay-client.js public/relay-client.js
fi

stamp="$( (cat Cargo.toml Cargo.lock $(find src -type f | sort); echo "$WASM_BINDGEN_BIN $WORKER_BUILD_BIN") | sha256sum | cut -c1-32)"
if [ -f build/index.js ] && [ -f build/.stamp ] && [ "$(cat build/.stamp)" = "$stamp" ]; then
  say "build is up to date"
  exit 0
fi
say "building the worker (release)"
"$WORKER_BUILD_BIN" --release >&2
printf '%s' "$stamp" > build/.stamp
