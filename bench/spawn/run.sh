#!/bin/sh
# Spawn benchmark: hubfleet vs JupyterHub + configurable-http-proxy.
# Usage: bench/spawn/run.sh [--venv DIR] [--rounds N] [other bench.py options]
# The venv comes from --venv, else $HUBFLEET_PYTHON_ENV, else bench/spawn/.venv
# (made here with python3 -m venv + pip install jupyterhub jupyterlab).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cmd="bench/spawn/run.sh $*"
venv=${HUBFLEET_PYTHON_ENV:-}
prev=
for a in "$@"; do
  case "$a" in --venv=*) venv=${a#--venv=} ;; esac
  [ "$prev" = "--venv" ] && venv=$a
  prev=$a
done
if [ -z "$venv" ]; then
  venv="$here/.venv"
  if [ ! -x "$venv/bin/jupyterhub-singleuser" ] || [ ! -x "$venv/bin/jupyter-lab" ]; then
    echo "[bench] creating $venv (python3 -m venv; pip install jupyterhub jupyterlab)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet jupyterhub jupyterlab
  fi
  set -- --venv "$venv" "$@"
fi
cd "$repo"
HUBFLEET_BENCH_CMD=$cmd exec "$venv/bin/python" "$here/bench.py" "$@"
