#!/usr/bin/env bash
# Installs whatever is missing to build and run the relay, and exports the
# tool paths worker-build needs. Safe to run again: each step checks first.
# Sourced by build.sh, dev.sh, test.sh and bench.sh; runnable on its own too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${ASKUTRON_TOOLS_DIR:-$HOME/.cache/askutron-relay}"
export PATH="$ROOT/node_modules/.bin:$PATH"

say() { printf '[setup] %s\n' "$*" >&2; }

lock_version() { # the version of crate $1 in Cargo.lock
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# 1. Rust's wasm target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown >&2
fi

# 2. npm packages (wrangler, Node 22, esbuild, binaryen, test tools), when the
#    lockfile changed since the last install.
if [ ! -f "$ROOT/node_modules/.package-lock.json" ] || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
  say "installing npm packages"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# 3. wasm-bindgen-cli at exactly the version Cargo.lock pins, and worker-build
#    matching the worker crate. Built once into a per-version cache.
cargo_tool() { # crate version binary
  local dir="$TOOLS/$1-$2"
  if [ ! -x "$dir/bin/$3" ]; then
    say "building $1 $2 (once; cached in $dir)"
    cargo install "$1" --version "$2" --root "$dir" --quiet >&2
  fi
  printf '%s/bin/%s' "$dir" "$3"
}
if [ ! -f "$ROOT/Cargo.lock" ]; then (cd "$ROOT" && cargo generate-lockfile >&2); fi
WASM_BINDGEN_BIN="$(cargo_tool wasm-bindgen-cli "$(lock_version wasm-bindgen)" wasm-bindgen)"
WORKER_BUILD_BIN="$(cargo_tool worker-build "$(lock_version worker)" worker-build)"
export WASM_BINDGEN_BIN WORKER_BUILD_BIN
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
