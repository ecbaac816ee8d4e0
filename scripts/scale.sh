#!/usr/bin/env bash
# `npm run scale`: the load model of the single Matchmaker, on the native
# simulator (sim/examples/scale.rs): N concurrent sessions with churn (hosts
# come and go, clients join and leave, a share of sessions search), the real
# cores, edge latencies, no faults, a few simulated minutes. Prints calls/s
# into every kind of object (p50/p99/max of 1 s windows), matchmaking times,
# /stats against the truth; the last line is the busiest objects' calls/s.
# Arguments go to the model, e.g.:
#   npm run scale -- --sessions 100000
#   npm run scale -- --curve                  (1,000, 10,000 and 100,000)
#   npm run scale -- --sessions 10000,100000 --design today|before|both
#   npm run scale -- --aggregators auto       (one leaf per 3,125 sessions)
# bench/scale.md holds the assumptions and the last results.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

cargo run --release --quiet -p askutron-sim --example scale -- "$@"
