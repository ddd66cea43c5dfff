#!/bin/sh
# REST API benchmark: hubfleet vs JupyterHub (+ configurable-http-proxy), side by side, wrk.
# Usage: bench/api/run.sh [--venv DIR] [--duration S] [--concurrency 8,32] [--no-build] ...
# Needs wrk (apt-get install wrk), node/npm (for configurable-http-proxy, installed into
# bench/api/node_modules unless bench/spawn or bench/proxy already has it) and a venv with
# jupyterhub: --venv, else $HUBFLEET_PYTHON_ENV. Builds hubfleet (release) first.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmd="bench/api/run.sh $*"
cd "$repo"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
HUBFLEET_BENCH_CMD=$cmd exec python3 "$here/bench.py" "$@"
