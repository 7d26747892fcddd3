#!/usr/bin/env bash
# The preload shim on a machine without RDMA device, with unmodified programs (preload-check,
# redis if installed): (1) no device: every socket stays TCP, the decision is logged; (2) with
# LIBSDP_SKIP_DEVICE_CHECK=1 every connect goes through the relay, SDP fails at once and TCP takes
# over (the nonblocking path included); (3) a rules file with errors: the errors name their lines,
# the program runs over TCP; (4) an explicitly named rules file that is missing: said so.
# Usage: host_test.sh BUILD_LIBSDP_DIR
set -u
B=${1:?build dir of libsdp}
RUN="$B/sdp_run"
IP=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -z "$IP" ]; then
  echo "SKIP: no non-loopback address on this machine (loopback never goes through SDP)"
  exit 77
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
fail=0
port=$((20000 + RANDOM % 20000))

pair() {  # NAME ENV...: server + client under sdp_run with ENV, client output to $work/NAME
  local name=$1; shift
  env "$@" "$RUN" -v "$B/preload-check" server "$port" >"$work/$name.server" 2>&1 &
  local srv=$!
  for _ in $(seq 50); do grep -qs listening "$work/$name.server" && break; sleep 0.1; done
  env "$@" timeout 120 "$RUN" -v "$B/preload-check" client "$IP" "$port" >"$work/$name.out" 2>&1
  local rc=$?
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
  port=$((port + 2))
  return $rc
}
expect() {  # FILE PATTERN WHAT
  if grep -q -- "$2" "$1"; then echo "ok $3"; else echo "FAIL $3 (no '$2' in $1):"; cat "$1"; fail=1; fi
}

pair nodevice LIBSDP_LOG_LEVEL=7 || fail=1
expect "$work/nodevice.out" "PASS: 0 failure" "no device: preload-check passes"
expect "$work/nodevice.out" "no RDMA device: every socket stays TCP" "no device: decision logged"

pair relay LIBSDP_SKIP_DEVICE_CHECK=1 || fail=1
expect "$work/relay.out" "PASS: 0 failure" "relay + TCP fallback: preload-check passes"
expect "$work/relay.out" "SDP failed (No such device.*): TCP" "blocking connect falls back, with the reason"
expect "$work/relay.out" "connected to the peer over TCP (fallback)" "nonblocking connect falls back in the relay"

cat >"$work/bad.conf" <<'CONF'
# a rules file with two mistakes
use both server * *:*
use sdpx client * *:*
use tcp client * 10.0.0.300:80
CONF
pair badrules LIBSDP_CONFIG_FILE="$work/bad.conf" LIBSDP_SKIP_DEVICE_CHECK=1 || fail=1
expect "$work/badrules.out" "PASS: 0 failure" "bad rules file: the program still runs"
expect "$work/badrules.out" "bad.conf:3: " "bad rules file: line 3 named"
expect "$work/badrules.out" "bad.conf:4: " "bad rules file: line 4 named"
expect "$work/badrules.out" "every socket stays TCP" "bad rules file: TCP for everything"
if grep -q "SDP connect started\|SDP failed" "$work/badrules.out"; then
  echo "FAIL bad rules file: SDP was tried"; fail=1
else
  echo "ok bad rules file: SDP never tried"
fi

LIBSDP_CONFIG_FILE="$work/missing.conf" "$RUN" "$B/preload-check" >/dev/null 2>"$work/missing.err"
expect "$work/missing.err" "missing.conf: cannot open the rules file" "missing named rules file reported"

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  redis-server --port "$port" --bind "$IP" --protected-mode no --save '' >"$work/redis.log" 2>&1 &
  for _ in $(seq 50); do redis-cli -h "$IP" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  LIBSDP_SKIP_DEVICE_CHECK=1 timeout 120 "$RUN" redis-benchmark -h "$IP" -p "$port" -n 2000 \
    -c 4 -t set,get -q >"$work/redis.out" 2>&1
  expect "$work/redis.out" "GET: .* requests per second" "redis-benchmark through the relay"
else
  echo "skip redis (not installed)"
fi
exit $fail
