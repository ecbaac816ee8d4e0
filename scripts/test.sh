#!/usr/bin/env bash
# `npm test`: set up, build, then every test: the native core, the integration
# tests under wrangler dev, the browser tests and a deploy dry run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

# Browser tests drive Debian's Chromium; install it if the machine lacks it.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2
  else
    say "warning: /usr/bin/chromium is missing and cannot be installed (not root)"
  fi
fi

say "native tests of the protocol core"
cargo test --quiet

bash scripts/build.sh

say "integration tests (wrangler dev + real sockets)"
node --test --test-concurrency=2 --test-timeout=300000 "$@" tests/*.test.js
