#!/bin/sh
# Soak: constant load on `hubfleet proxy` (and CHP with --peer) for --minutes (default 10),
# sampling RSS and open file descriptors. Not part of CI.
# Usage: bench/proxy-soak/run.sh [--bin PATH] [--minutes M] [--every S] [--peer] [--out FILE]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
case " $* " in
  *" --peer "*) [ -x bench/proxy/node_modules/.bin/configurable-http-proxy ] ||
      (cd bench/proxy && npm install --no-audit --no-fund --silent) ;;
esac
case " $* " in
  *" --bin "*) ;;
  *) cargo build --profile dist -p hubfleet >&2 ;;
esac
ulimit -n 200000 2>/dev/null || true
exec python3 "$here/soak.py" "$@"
