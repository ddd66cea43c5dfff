#!/bin/sh
# Proxy benchmark: direct vs nginx vs configurable-http-proxy vs `hubfleet proxy`, one run.
# Usage: bench/proxy/run.sh [--bin PATH] [--duration S] [--concurrency 1,32,128]
#                           [--websockets N] [--routes N] [--skip http,ws,routes,tls] [--out FILE]
# Needs wrk, nginx, node and openssl (apt-get install wrk nginx-light nodejs npm openssl), and
# h2load for the HTTP/2 cells (apt-get install nghttp2-client); installs
# configurable-http-proxy into bench/proxy/node_modules and builds hubfleet (the `dist` profile: release with fat LTO).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmd="bench/proxy/run.sh $*"
cd "$repo"
if [ ! -x "$here/node_modules/.bin/configurable-http-proxy" ]; then
  (cd "$here" && npm install --no-audit --no-fund --silent)
fi
case " $* " in
  *" --bin "*) ;;
  *) cargo build --profile dist -p hubfleet >&2 ;;
esac
# 10,000 websockets need ~4 descriptors each across client, proxy and backend.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HUBFLEET_BENCH_CMD=$cmd exec python3 "$here/bench.py" "$@"
