#!/usr/bin/env bash
# Runs one preload lab scenario (check | apps) on the two soft-RoCE hosts with a wire capture,
# then judges it: the unmodified programs' results, and from the capture (decoded by ibsniff) that
# SDP carried their traffic. Usage: run.sh check|apps LIBSDP_BUILD_DIR IBSNIFF OUT_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
scenario=${1:?check|apps} bin=${2:?libsdp build dir} ibsniff=${3:?ibsniff binary} out=${4:?out dir}
rm -rf "$out"
mkdir -p "$out"
[ "$scenario" = apps ] && bash "$here/deps.sh"
bash "$repo/tools/lab/lab.sh" run --timeout 900 --out "$out/lab" --capture "$out/wire.pcap" \
  --env LAB_BIN="$bin" "$here/$scenario-a.sh" "$here/$scenario-b.sh" >"$out/lab.log" 2>&1
lab_rc=$?
A="$out/lab/a" B="$out/lab/b"
fail=0
ok() { echo "ok $*"; }
bad() { echo "FAIL $*"; fail=1; }
expect_file() {  # FILE PATTERN WHAT
  if grep -q -- "$2" "$1" 2>/dev/null; then ok "$3"; else bad "$3 (no '$2' in $1)"; fi
}
[ "$lab_rc" -eq 0 ] && ok "lab run" || { bad "lab run (status $lab_rc)"; tail -20 "$out/lab.log"; }
"$ibsniff" -r "$out/wire.pcap" -q -z conv,sdp >"$out/sdp-conv.txt" 2>&1 || bad "ibsniff on the capture"

# An SDP connection to PORT that carried at least MIN bytes in direction DIR (from ibsniff
# -z conv,sdp): up = requester -> responder (client to server), down = the other way, both.
sdp_carried() {  # PORT DIR MIN WHAT
  awk -v port="$1" -v dir="$2" -v min="$3" '
    /^#[0-9]+ / { on = index($0, "(port " port ")") > 0 }
    on && /requester -> responder:/ { up = $4 }
    on && /responder -> requester:/ {
      down = $4
      if ((dir == "up" && up + 0 >= min) || (dir == "down" && down + 0 >= min) ||
          (dir == "both" && up + 0 >= min && down + 0 >= min)) n++
    }
    END { exit n > 0 ? 0 : 1 }' "$out/sdp-conv.txt" && ok "$4" || bad "$4 (see $out/sdp-conv.txt)"
}

case "$scenario" in
  check)
    [ "$(cat "$B/client.rc" 2>/dev/null)" = 0 ] && ok "preload-check client passed" ||
      { bad "preload-check client"; cat "$B/client.out"; }
    expect_file "$B/client.out" "PASS: 0 failure" "every socket check passed over SDP"
    expect_file "$B/client.log" "connect 10.99.0.1:7400: SDP$" "blocking connect went SDP"
    expect_file "$B/client.log" "connected to the peer over SDP" "nonblocking connect went SDP"
    expect_file "$B/client.log" "SDP failed (Connection refused: CM REJ.*: TCP" \
      "no SDP listener: the CM reject sends the client to TCP, with the reason"
    expect_file "$A/server.log" "listen \[::\]:7400: SDP and TCP" "server listens on SDP and TCP"
    [ "$(cat "$B/fallback.rc" 2>/dev/null)" = 0 ] && ok "both connects to a TCP-only server work" ||
      { bad "fallback client"; cat "$B/fallback.out" "$B/fallback.log"; }
    expect_file "$B/fallback.log" "connect 10.99.0.1:7420: SDP failed (Connection refused: CM REJ" \
      "blocking connect to a TCP-only server: CM reject, then TCP"
    expect_file "$B/fallback.log" "SDP connect failed (Connection refused): falling back to TCP" \
      "nonblocking connect to a TCP-only server: CM reject, then TCP"
    # "Within milliseconds, from the CM reject, not a timeout": the connect timeout is seconds.
    awk '/^fallback:/ { if ($4 + 0 < 1000 && $8 + 0 < 1000) ok = 1 } END { exit !ok }' \
      "$B/fallback.out" && ok "fallbacks under 1 s: $(cat "$B/fallback.out")" ||
      bad "fallback too slow: $(cat "$B/fallback.out")"
    sdp_carried 7400 both 1048576 "the capture shows SDP carrying the 1 MiB echo"
    expect_file "$A/server-exec.log" "inherited listener \[::\]:7410: SDP and TCP" \
      "a listener inherited through exec gets its SDP listener back"
    expect_file "$B/after-exec.out" "pingpong: 20 round trips" "round trips to the exec'd server"
    expect_file "$B/after-exec.log" "connect 10.99.0.1:7410: SDP$" "... over SDP"
    sdp_carried 7410 both 640 "the capture shows SDP carrying them"
    ;;
  apps)
    for f in "$B"/*.rc; do
      [ "$(cat "$f")" = 0 ] && ok "$(basename "$f" .rc) exited 0" ||
        bad "$(basename "$f" .rc) exited $(cat "$f") ($(tail -3 "${f%.rc}.log" | tr '\n' ' '))"
    done
    expect_file "$B/redis-get.out" "hello over sdp" "redis-cli reads back what it set"
    expect_file "$B/redis-bench-sdp.out" "GET: .* requests per second" "redis-benchmark over SDP"
    cmp -s "$A/big.sha256" "$B/big.got.sha256" && ok "curl got nginx's 4 MiB file intact" ||
      bad "curl's file differs"
    expect_file "$B/curl-index.out" "hello from nginx over SDP" "curl reads nginx's page"
    expect_file "$B/wrk-sdp.out" "Requests/sec" "wrk against nginx over SDP"
    expect_file "$B/iperf3-sdp.out" '"sum_received"' "iperf3 over SDP"
    expect_file "$B/pingpong-sdp.out" "pingpong: 300 round trips" "timed round trips over SDP"
    expect_file "$B/pingpong-sdp.log" "connect 10.99.0.1:7400: SDP$" "the round trips went SDP"
    sdp_carried 6400 both 1000 "the capture shows redis traffic on SDP"
    sdp_carried 8080 down 4194304 "the capture shows nginx's 4 MiB on SDP"
    sdp_carried 5201 up 1000000 "the capture shows iperf3 on SDP"
    # SDP / TCP side by side (no goal under emulation; recorded).
    {
      for t in SET GET; do
        s=$(tr '\r' '\n' <"$B/redis-bench-sdp.out" | awk -v t="$t:" '$1 == t { print $2 }' | tail -1)
        p=$(tr '\r' '\n' <"$B/redis-bench-tcp.out" | awk -v t="$t:" '$1 == t { print $2 }' | tail -1)
        echo "redis-benchmark $t: SDP $s rps, TCP $p rps"
      done
      echo "wrk: SDP $(awk '/Requests\/sec/ {print $2}' "$B/wrk-sdp.out") req/s, TCP $(awk '/Requests\/sec/ {print $2}' "$B/wrk-tcp.out") req/s"
      for k in sdp tcp; do
        python3 -c "import json; d=json.load(open('$B/iperf3-$k.out')); print('iperf3 $k: %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))" 2>/dev/null
      done
      for k in sdp tcp; do sed "s/^/$k /" "$B/pingpong-$k.out"; done
    } | tee "$out/ratios.txt"
    ;;
esac
exit $fail
