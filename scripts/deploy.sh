#!/usr/bin/env bash
# `npm run deploy [-- <wrangler deploy args>]`: set up, build, deploy.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
bash scripts/build.sh
exec wrangler deploy "$@"
