#!/usr/bin/env bash
# `npm run profile`: CPU profiles of the relay under wrangler dev while the
# throughput load runs and while sessions connect, through workerd's inspector
# (Chrome DevTools Protocol). Writes bench/out/*.cpuprofile and prints the top
# functions by self time. Settings: PROFILE_* variables (bench/profile.js).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

# Wasm functions are named in the profile only if the build keeps its name
# section (a plain build strips it to upload less).
KEEP_WASM_NAMES=1 bash scripts/build.sh
say "profiling (about 1 minute)"
node bench/profile.js
