#!/bin/sh
# Fault tests with more servers than CI runs (default 50), printing the figures that
# docs/benchmarks.md records: hub SIGKILL + restart, PostgreSQL restart, SQLite on a full disk,
# a hanging spawner, and one of two replicas killed behind nginx.
# Usage: bench/faults/run.sh [SERVERS]   (PostgreSQL goes down for 12 s, then again for 5 s)
# Needs what the tests need (see README.md): HUBFLEET_PYTHON_ENV, HUBFLEET_TEST_POSTGRES_URL,
# nginx, PostgreSQL's server binaries, root for the tmpfs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
export HUBFLEET_FAULT_SERVERS="${1:-50}"
export RUST_BACKTRACE=0
run() {
  cargo test -q "$@" -- --nocapture --test-threads 1 2>&1 |
    grep -E '(asking again|hub SIGKILL|proxy SIGKILL|PostgreSQL down|a write on the full disk|writes work again|other starts ready|under load, one replica|starts the killed|skipped:)|^test result|panicked' -A2
}
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $HUBFLEET_FAULT_SERVERS servers, load average $(cut -d' ' -f1 /proc/loadavg)"
run -p hubfleet --test faults
# A PostgreSQL outage shorter than the 10 s a request waits for a connection (the run above
# keeps it down 12 s).
(export HUBFLEET_FAULT_PG_DOWN_SECONDS=5; run -p hubfleet --test faults postgres)
run -p hubfleet-hub --test hanging_spawner
run -p hubfleet --test ha
run -p hubfleet --test external_proxy
