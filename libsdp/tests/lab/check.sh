#!/usr/bin/env bash
# Judges one scenario of the lab suite from the files the guests left in OUT (see suite-a.sh,
# suite-b.sh). Usage: check.sh OUT NAME. Exit 0 only when the scenario's outcome holds.
set -u
OUT=${1:?usage: check.sh OUT NAME}
NAME=${2:?usage: check.sh OUT NAME}
A=$OUT/a
B=$OUT/b
bad() { echo "FAIL $NAME: $*"; exit 1; }
need() { [ -s "$1" ] || bad "missing $1 (the scenario did not run; see $OUT/a.out, $OUT/b.out)"; }
rc_ok() { need "$1"; [ "$(cat "$1")" = 0 ] || bad "$2 exited $(cat "$1")"; }

case "$NAME" in
  bcopy_64m | zcopy_64m)
    for f in $A/$NAME.sent $A/$NAME.recv $B/$NAME.sent $B/$NAME.recv; do need "$f"; done
    rc_ok "$A/$NAME.rc" "sdpcat -l (host a)"
    rc_ok "$B/$NAME.rc" "sdpcat (host b)"
    [ "$(cat $A/$NAME.sent)" = "$(cat $B/$NAME.recv)" ] || bad "a->b sha256 differs"
    [ "$(cat $B/$NAME.sent)" = "$(cat $A/$NAME.recv)" ] || bad "b->a sha256 differs"
    [ "$(cat $A/$NAME.sent)" != "$(cat $A/$NAME.recv)" ] || bad "both directions carried the same bytes?"
    for side in $A $B; do
      zs=$(grep -o '"zcopy_bytes_sent": "[0-9]*"' "$side/$NAME.stats" | grep -o '[0-9]*' || echo 0)
      bs=$(grep -o '"bytes_sent": "[0-9]*"' "$side/$NAME.stats" | head -1 | grep -o '[0-9]*' || echo 0)
      if [ "$NAME" = zcopy_64m ]; then
        [ "${zs:-0}" -gt $((bs / 2)) ] || bad "$side: only ${zs:-0} of $bs bytes went ZCopy"
      else
        [ "${zs:-0}" = 0 ] || bad "$side: ${zs} bytes went ZCopy with ZCopy off"
      fi
    done
    echo "PASS $NAME: sha256 equal both ways ($(cat $A/$NAME.sent | cut -c1-16)…, $(cat $B/$NAME.sent | cut -c1-16)…), $(cat $B/$NAME.seconds 2>/dev/null) s"
    ;;
  messages_10k | concurrent_100 | source | refused | unreachable | peer_killed)
    need "$B/$NAME.txt"
    cat "$B/$NAME.txt"
    rc_ok "$B/$NAME.rc" "sdp-labcheck"
    grep -q "^labcheck .*: PASS" "$B/$NAME.txt" || bad "no PASS verdict"
    ;;
  halfclose)
    need "$A/$NAME.txt"; need "$B/$NAME.txt"
    cat "$A/$NAME.txt" "$B/$NAME.txt"
    rc_ok "$A/$NAME.rc" "halfclose-server"
    rc_ok "$B/$NAME.rc" "halfclose client"
    ;;
  afib_resolve)
    rc_ok "$B/afib_resolve.rc" "afib-addr resolve ($(cat "$B/afib_resolve.err" 2>/dev/null))"
    want="[::ffff:10.99.0.1]:0x0000000000011b5f"
    [ "$(head -1 "$B/afib_resolve.out")" = "$want" ] ||
      bad "resolved to '$(head -1 "$B/afib_resolve.out")', expected '$want'"
    grep -q "P_Key       0xffff" "$B/afib_resolve.out" || bad "P_Key is not the default"
    echo "PASS afib_resolve: 10.99.0.1 resolves to $want through rdma_cm"
    ;;
  afib_stream)
    rc_ok "$B/afib_stream.rc" "afib-stream connect ($(cat "$B/afib_stream.err" 2>/dev/null))"
    rc_ok "$A/afib_stream.rc" "afib-stream listen ($(cat "$A/afib_stream.err" 2>/dev/null))"
    grep -q "^echo: hello over AF_IB$" "$B/afib_stream.out" || bad "no echo: $(cat "$B/afib_stream.out")"
    grep -q "^connection from \[::ffff:10.99.0.2\]:0x000000000001" "$A/afib_stream.out" ||
      bad "the server's peer address: $(cat "$A/afib_stream.out")"
    grep -q "^echoed 16 bytes$" "$A/afib_stream.out" || bad "server: $(cat "$A/afib_stream.out")"
    echo "PASS afib_stream: AF_IB SOCK_STREAM echo between [::ffff:10.99.0.2] and [::ffff:10.99.0.1]:sdp:7100"
    ;;
  afib_seqpacket)
    rc_ok "$B/afib_seqpacket.rc" "afib-seqpacket connect ($(cat "$B/afib_seqpacket.err" 2>/dev/null))"
    rc_ok "$A/afib_seqpacket.rc" "afib-seqpacket listen ($(cat "$A/afib_seqpacket.err" 2>/dev/null))"
    grep -q "^4 messages echoed with their boundaries" "$B/afib_seqpacket.out" ||
      bad "client: $(cat "$B/afib_seqpacket.out")"
    grep -q "^echoed 4 messages$" "$A/afib_seqpacket.out" || bad "server: $(cat "$A/afib_seqpacket.out")"
    echo "PASS afib_seqpacket: $(cat "$B/afib_seqpacket.out")"
    ;;
  afib_rdma)
    rc_ok "$B/afib_rdma.rc" "afib-rdma connect ($(cat "$B/afib_rdma.err" 2>/dev/null))"
    rc_ok "$A/afib_rdma.rc" "afib-rdma listen ($(cat "$A/afib_rdma.err" 2>/dev/null))"
    for want in "RDMA read of 4096 bytes: the peer's bytes" \
      "RDMA write of 512 bytes with immediate: done" \
      "RDMA write after revocation: failed (remote access error)"; do
      grep -qF "$want" "$B/afib_rdma.out" || bad "client: no '$want' in: $(cat "$B/afib_rdma.out")"
    done
    for want in "RDMA write with immediate 0x1234 received: 512 bytes as written" \
      "message 'hello-imm' with immediate 0x5678" "region revoked"; do
      grep -qF "$want" "$A/afib_rdma.out" || bad "server: no '$want' in: $(cat "$A/afib_rdma.out")"
    done
    echo "PASS afib_rdma: RDMA read, RDMA write with immediate, send with immediate; access after revocation refused"
    ;;
  native)
    need "$B/$NAME.rc"
    echo "client: rc $(cat $B/native.rc), $(cat $B/native.ms 2>/dev/null) ms: $(cat $B/native.err)"
    echo "server: rc $(cat $A/native.rc 2>/dev/null): $(cat $A/native.err 2>/dev/null)"
    if [ "$(cat $B/native.rc)" = 0 ]; then
      [ "$(cat $B/native.recvdata)" = "native hello" ] || bad "native: wrong data"
      echo "PASS native: AF_IB with service ID 0x10000|port works here"
    else
      # rxe (RoCE) cannot resolve AF_IB addresses: the failure must be prompt and explained.
      [ "$(cat $B/native.ms)" -lt 10000 ] || bad "native connect took $(cat $B/native.ms) ms to fail"
      grep -q "connect to" "$B/native.err" || bad "native failure without a clear message"
      echo "PASS native: not carried by this fabric, and the client says so promptly"
    fi
    ;;
  conformance)
    need "$B/conformance.rc"
    tail -n 15 "$B/conformance.out" 2>/dev/null
    rc_ok "$B/conformance.rc" "sdp-conformance --peer 10.99.0.1 (output: $B/conformance.out)"
    need "$B/conformance.junit.xml"
    counts=$(grep -o '\(failures\|errors\)="[0-9]*"' "$B/conformance.junit.xml")
    [ -n "$counts" ] || bad "no failures count in $B/conformance.junit.xml"
    if grep -qv '="0"$' <<<"$counts"; then
      bad "$B/conformance.junit.xml: $(tr '\n' ' ' <<<"$counts")"
    fi
    [ -s "$A/conformance.testd.alive" ] ||
      bad "sdp-testd did not survive the suite: $(tail -n 5 "$A/conformance.testd.log" 2>/dev/null)"
    tests=$(grep -o 'tests="[0-9]*"' "$B/conformance.junit.xml" | head -1 | grep -o '[0-9]*')
    [ "${tests:-0}" -gt 0 ] || bad "no cases ran ($B/conformance.junit.xml)"
    need "$B/conformance.replay.rc"
    tail -n 3 "$B/conformance.replay.out" 2>/dev/null
    rc_ok "$B/conformance.replay.rc" "sdp-conformance --replay captures/echo.pcap --side client (output: $B/conformance.replay.out)"
    echo "PASS conformance: $tests cases and the echo.pcap client replay against sdp-testd over rxe (IP CM), no failures"
    ;;
  *) bad "unknown scenario" ;;
esac
exit 0
