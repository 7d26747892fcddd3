#!/usr/bin/env bash
# The preload shim's cost on the fallback path (bench/README.md): redis-benchmark against
# redis-server over the loopback interface, plainly and with both programs under sdp_run, side by
# side in one run. Loopback connections never go through SDP, so the shim only decides and
# passes each call to libc: the goal is >= 0.98x the plain throughput.
#
# Two servers run at once (one plain, one under sdp_run); the rounds alternate between them, and
# each test's figure is the median of its rounds. Prints requests/s per test and the ratio.
#
# Needs redis-server and redis-benchmark, and a libsdp build with sdp_run:
#   cmake --preset release && cmake --build --preset release -j2 --target sdp-preload
# then   bench/preload/run.sh
#
# Environment (defaults in brackets):
#   BUILD     build directory of libsdp [build/release/libsdp]
#   ROUNDS    rounds per side [7]
#   REQUESTS  requests per test and round [100000]
#   CLIENTS   parallel connections [50]
#   TESTS     redis-benchmark tests [ping_inline,set,get]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build/release/libsdp}
ROUNDS=${ROUNDS:-7}
REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-ping_inline,set,get}
RUN=$BUILD/sdp_run

die() {
  echo "run.sh: $*" >&2
  exit 1
}
[[ -x $RUN ]] || die "$RUN not found: build the sdp-preload target first (see the top of $0)"
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
  die "redis-server / redis-benchmark not installed (apt-get install redis-server redis-tools)"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
base=$((30000 + RANDOM % 20000))
plain_port=$base preload_port=$((base + 1))
server() { # PORT PREFIX...
  local port=$1
  shift
  "$@" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$work/server-$port.log" 2>&1 &
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "redis-server on port $port did not start: $(tail -5 "$work/server-$port.log")"
}
server "$plain_port"
server "$preload_port" "$RUN"

bench() { # SIDE PORT PREFIX...: one round; appends "SIDE TEST RPS" lines to $work/results
  local side=$1 port=$2
  shift 2
  "$@" redis-benchmark -h 127.0.0.1 -p "$port" -n "$REQUESTS" -c "$CLIENTS" -t "$TESTS" --csv \
    >"$work/out" 2>"$work/err" || die "redis-benchmark ($side) failed: $(head -5 "$work/err")"
  # --csv: "test","rps",... (redis 7: a header line first)
  awk -F'"' -v s="$side" '$2 != "test" && $4 != "" { print s, $2, $4 }' "$work/out" \
    >>"$work/results"
}
: >"$work/results"
for ((i = 1; i <= ROUNDS; i++)); do
  bench plain "$plain_port"
  bench preload "$preload_port" "$RUN"
done

echo "redis-benchmark over loopback: $REQUESTS requests x $ROUNDS rounds per side, $CLIENTS clients"
echo "(median requests/s; 'preload' = redis-server and redis-benchmark both under sdp_run)"
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tests = []
for side, test, rps in rows:
    if test not in tests:
        tests.append(test)
worst = None
for t in tests:
    p = statistics.median(float(r) for s, tt, r in rows if s == "plain" and tt == t)
    q = statistics.median(float(r) for s, tt, r in rows if s == "preload" and tt == t)
    ratio = q / p
    worst = ratio if worst is None else min(worst, ratio)
    print(f"  {t:<28} plain {p:>12.0f}   preload {q:>12.0f}   preload/plain {ratio:.3f}x")
print(f"preload vs plain: {worst:.3f}x at worst (goal >= 0.98x)")
PY
