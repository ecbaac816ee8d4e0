#!/usr/bin/env bash
# `npm run dev [-- <wrangler dev args>]`: set up, build, serve on 127.0.0.1:8787
# unless the arguments choose another --port / --ip.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
bash scripts/build.sh
defaults=()
[[ " $* " =~ [[:space:]]--port[[:space:]=] ]] || defaults+=(--port 8787)
[[ " $* " =~ [[:space:]]--ip[[:space:]=] ]] || defaults+=(--ip 127.0.0.1)
exec wrangler dev "${defaults[@]}" "$@"
