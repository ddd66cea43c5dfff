#!/bin/sh
# Config changes and binder launches: hubfleet (file watch) vs JupyterHub + configurable-http-proxy
# (restart) for a new profile; hubfleet's binder first launch vs cached relaunch.
# Usage: bench/reload/run.sh [--venv DIR] [--hubfleet BINARY] [--rounds N] [--binder-rounds N] [...]
# The venv comes from --venv, else $HUBFLEET_PYTHON_ENV, else .venv at the repository root
# (scripts/test makes it); it needs jupyterhub, jupyterlab and requests. bench.py builds nothing:
# give it a binary with --hubfleet (default target/release/hubfleet). See bench.py --help.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmd="bench/reload/run.sh $*"
venv=${HUBFLEET_PYTHON_ENV:-}
prev=
for a in "$@"; do
  case "$a" in --venv=*) venv=${a#--venv=} ;; esac
  [ "$prev" = "--venv" ] && venv=$a
  prev=$a
done
if [ -z "$venv" ]; then
  venv="$repo/.venv"
  set -- --venv "$venv" "$@"
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "bench/reload: no Python venv at $venv: pass --venv DIR (a venv with jupyterhub, jupyterlab and requests)" >&2
  exit 1
fi
cd "$repo"
HUBFLEET_BENCH_CMD=$cmd exec "$venv/bin/python" "$here/bench.py" "$@"
