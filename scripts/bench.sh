#!/usr/bin/env bash
# `npm run bench`: the relay against a PartyServer peer (bench/peer) and a bare
# JavaScript Durable Object (bench/bare) under the
# same wrangler dev, in alternating rounds, driven by the same load generator;
# then the Matchmaker and keep-alive scenarios; writes bench/results.md.
# Extra arguments are ignored; sizes come from BENCH_* variables (bench/run.js).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

bash scripts/build.sh

# The peer's own packages (partyserver, workers types), from its lockfile.
if [ ! -f bench/peer/node_modules/.package-lock.json ] || [ bench/peer/package-lock.json -nt bench/peer/node_modules/.package-lock.json ]; then
  say "installing the benchmark peer's npm packages"
  (cd bench/peer && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

say "benchmark (about 12-15 minutes)"
node bench/run.js
