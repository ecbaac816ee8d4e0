#!/usr/bin/env bash
# `npm run profile`: CPU profiles of the relay under wrangler dev while the
# throughput load runs and while sessions connect, through workerd's inspector
# (Chrome DevTools Protocol). Writes bench/out/*.cpuprofile and prints the top
# functions by self time. Settings: PROFILE_* variables (bench/profile.js).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

bash scripts/build.sh
say "profiling (about 1 minute)"
node bench/profile.js
