#!/usr/bin/env bash
# `npm run bench:links`: what a master/slave link carries. First on the
# simulator, where calls between the two objects take a production round
# trip (sim/examples/links.rs, 100 ms by default; extra arguments go to it),
# then under `wrangler dev` on loopback against the same traffic within one
# session (bench/links.js; BENCH_LINK_* variables).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

say "the link on the simulator (production round trips)"
cargo run --release --quiet -p askutron-sim --example links -- "$@"

bash scripts/build.sh
say "the link under wrangler dev (loopback)"
node bench/links.js
