#!/usr/bin/env bash
# `npm run dev [-- <wrangler dev args>]`: set up, build, serve on 127.0.0.1:8787.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
bash scripts/build.sh
exec wrangler dev --ip 127.0.0.1 --port 8787 "$@"
