#!/usr/bin/env bash
# The preload shim on a machine without RDMA device, with unmodified programs: (1) no device:
# every socket stays TCP, the decision is logged; (2) with LIBSDP_SKIP_DEVICE_CHECK=1 every
# connect goes through the relay, SDP fails at once and TCP takes over (the nonblocking path
# included); (3) a rules file with errors: the errors name their lines, the program runs over
# TCP; (4) an explicitly named rules file that is missing: said so; (5) redis-server with
# redis-cli and redis-benchmark, nginx (master + 2 workers) with curl and wrk, iperf3, in ways
# (1) and (2), each checked for its results (a program not installed is skipped, said so).
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

# Unmodified programs from Debian's packages, servers and clients both under sdp_run, in the two
# ways a machine without RDMA runs them: no device (every socket stays TCP) and through the relay
# with SDP failing at once (LIBSDP_SKIP_DEVICE_CHECK=1: each connect falls back to TCP). Each is
# checked for its results.
apps() {  # MODE ENV...
  local mode=$1; shift
  local run=(env "$@" timeout 120 "$RUN" -v)
  if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    "${run[@]}" redis-server --port "$port" --bind "$IP" --protected-mode no --save '' \
      --appendonly no >"$work/redis-$mode.log" 2>&1 &
    local srv=$!
    for _ in $(seq 50); do redis-cli -h "$IP" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    "${run[@]}" redis-cli -h "$IP" -p "$port" set greeting "hello $mode" >/dev/null 2>&1
    "${run[@]}" redis-cli -h "$IP" -p "$port" get greeting >"$work/redis-get-$mode.out" 2>&1
    expect "$work/redis-get-$mode.out" "^hello $mode\$" "$mode: redis-cli set/get"
    "${run[@]}" redis-benchmark -h "$IP" -p "$port" -n 4000 -c 8 -t set,get -q \
      >"$work/redis-$mode.out" 2>&1
    expect "$work/redis-$mode.out" "GET: .* requests per second" "$mode: redis-benchmark set/get"
    kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
    port=$((port + 2))
  else
    echo "skip redis (not installed)"
  fi
  if command -v nginx >/dev/null && command -v curl >/dev/null; then
    mkdir -p "$work/www" "$work/nginx-$mode"
    [ -f "$work/www/big.bin" ] || head -c 4194304 /dev/urandom >"$work/www/big.bin"
    chmod a+rx "$work" "$work/www" && chmod a+r "$work/www/big.bin"  # nginx's workers: www-data
    local n="$work/nginx-$mode"
    cat >"$n/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
error_log $n/error.log;
pid $n/nginx.pid;
events { worker_connections 128; use epoll; }
http {
  access_log off;
  client_body_temp_path $n/body;
  proxy_temp_path $n/proxy;
  fastcgi_temp_path $n/fastcgi;
  uwsgi_temp_path $n/uwsgi;
  scgi_temp_path $n/scgi;
  server { listen $IP:$port; root $work/www; }
}
CONF
    "${run[@]}" nginx -c "$n/nginx.conf" >"$n/out" 2>&1 &
    local srv=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://$IP:$port/" && break; sleep 0.1; done
    "${run[@]}" curl -sS -o "$n/big.got" "http://$IP:$port/big.bin" >"$n/curl.log" 2>&1
    if cmp -s "$work/www/big.bin" "$n/big.got"; then
      echo "ok $mode: curl fetched 4 MiB from nginx, bytes equal"
    else
      echo "FAIL $mode: curl's copy of big.bin differs"; cat "$n/curl.log"; fail=1
    fi
    if command -v wrk >/dev/null; then
      "${run[@]}" wrk -t2 -c8 -d2s "http://$IP:$port/big.bin" >"$n/wrk.out" 2>&1
      expect "$n/wrk.out" "Requests/sec: *[1-9]" "$mode: wrk against nginx"
      if grep -q "Socket errors\|Non-2xx" "$n/wrk.out"; then
        echo "FAIL $mode: wrk saw errors"; cat "$n/wrk.out"; fail=1
      fi
    else
      echo "skip wrk (not installed)"
    fi
    kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
    pkill -f "nginx -c $n/nginx.conf" 2>/dev/null
    port=$((port + 2))
  else
    echo "skip nginx (not installed)"
  fi
  if command -v iperf3 >/dev/null; then
    "${run[@]}" iperf3 -s -B "$IP" -p "$port" -1 >"$work/iperf3-server-$mode.out" 2>&1 &
    local srv=$!
    sleep 0.5
    "${run[@]}" iperf3 -c "$IP" -p "$port" -t 2 -J >"$work/iperf3-$mode.out" \
      2>"$work/iperf3-$mode.log"
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if "error" not in d and d["end"]["sum_received"]["bytes"] > 0 else 1)' "$work/iperf3-$mode.out" 2>/dev/null; then
      echo "ok $mode: iperf3 moved data"
    else
      echo "FAIL $mode: iperf3"; tail -20 "$work/iperf3-$mode.out" "$work/iperf3-$mode.log"; fail=1
    fi
    kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
    port=$((port + 2))
  else
    echo "skip iperf3 (not installed)"
  fi
}
apps nodevice LIBSDP_LOG_LEVEL=7
apps relay LIBSDP_SKIP_DEVICE_CHECK=1
exit $fail
