#!/bin/sh
# Admin page at scale: 10,000 users seeded, then the admin page's first render (the page and
# its first users request) and a search, timed as the server sees them.
# Usage: bench/admin/run.sh [--users 10000] [--rounds 50] [--no-build]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
build=1
for arg in "$@"; do [ "$arg" = "--no-build" ] && build=0; done
[ $build = 1 ] && cargo build --release -p hubfleet --quiet
exec python3 "$here/bench.py" --binary "$repo/target/release/hubfleet" "$@"
