# Lab suite, host b (10.99.0.2): the clients. See suite-a.sh.
set -u
BIN=${LAB_BIN:?}
X=${LAB_XFER_BYTES:-67108864}
A=$LAB_PEER_IP

xfer_client() {  # NAME PORT ZCOPY_THRESHOLD
  local name=$1 port=$2 zc=$3
  head -c "$X" /dev/urandom >/tmp/in
  sha256sum </tmp/in | cut -d' ' -f1 >"$LAB_OUT/$name.sent"
  lab_wait "$name.listening" 120 || return
  local t0=$SECONDS
  SDP_TRACE=$LAB_OUT/$name.trace timeout 600 "$BIN/sdpcat" -q --zcopy-threshold "$zc" --stats \
    "$A" "$port" </tmp/in >/tmp/out 2>"$LAB_OUT/$name.stats"
  echo $? >"$LAB_OUT/$name.rc"
  echo $((SECONDS - t0)) >"$LAB_OUT/$name.seconds"
  sha256sum </tmp/out | cut -d' ' -f1 >"$LAB_OUT/$name.recv"
  rm -f /tmp/in /tmp/out
}

check() {  # NAME CMD...: runs sdp-labcheck, keeps its verdict line and exit code
  local name=$1; shift
  timeout 600 "$BIN/sdp-labcheck" "$@" >"$LAB_OUT/$name.txt" 2>&1
  echo $? >"$LAB_OUT/$name.rc"
}

xfer_client bcopy_64m 5001 0
xfer_client zcopy_64m 5002 65536

if lab_wait testd.up 120; then
  check messages_10k messages "$A" 7007 10000
  check concurrent_100 concurrent "$A" 7007 100
  check source source "$A" 7019 4194304
fi
lab_signal echo.done
check refused refused "$A" 5999 1000
check unreachable unreachable 10.99.0.77 5999 10000

if lab_wait victim.up 120; then
  check peer_killed reset "$A" 8009 "$LAB_SYNC/peer_killed.killed" 5000
fi
lab_signal peer_killed.done

lab_wait halfclose.listening 120 && check halfclose halfclose "$A" 5007

if lab_wait native.listening 120; then
  t0=$(date +%s%N)
  echo "native hello" | timeout 30 "$BIN/sdpcat" --native "$A" 5008 >"$LAB_OUT/native.recvdata" \
    2>"$LAB_OUT/native.err"
  echo $? >"$LAB_OUT/native.rc"
  echo $(( ($(date +%s%N) - t0) / 1000000 )) >"$LAB_OUT/native.ms"
fi
lab_signal native.done

# libafib: host a's fabric address through rdma_cm (on RoCEv2, the GID of an IPv4 address is
# the IPv4-mapped IPv6 address).
AFIB_ADDR="$BIN/../libafib/afib-addr"
timeout 60 "$AFIB_ADDR" -v resolve "$A" --sid sdp:7007 >"$LAB_OUT/afib_resolve.out" \
  2>"$LAB_OUT/afib_resolve.err"
echo $? >"$LAB_OUT/afib_resolve.rc"

# The client of each of host a's libafib examples (suite-a.sh, afib_serve).
afib_connect() {  # NAME SID [ARG...]
  local name=$1 sid=$2
  shift 2
  if lab_wait "afib_$name.listening" 120; then
    timeout 60 "$BIN/../libafib/afib-$name" connect "[::ffff:$A]:$sid" "$@" \
      >"$LAB_OUT/afib_$name.out" 2>"$LAB_OUT/afib_$name.err"
    echo $? >"$LAB_OUT/afib_$name.rc"
  fi
  lab_signal "afib_$name.done"
}
afib_connect stream sdp:7100 "hello over AF_IB"
afib_connect seqpacket ipcm:7200
afib_connect rdma ipcm:7300

# The conformance suite against host a's sdp-testd, IP CM mode (native SDP needs InfiniBand).
# The guests see the host's files at the same paths, so the build's sdp-conformance and the
# repo's scenarios are used in place.
CONF=${LAB_CONF_BIN:-$BIN/../conformance}
if lab_wait conformance.testd.up 120; then
  timeout 900 "$CONF/sdp-conformance" --peer "$A" --cm ip --port-base 7000 \
    --scenarios "${LAB_REPO:-$PWD}/conformance/scenarios" \
    --junit "$LAB_OUT/conformance.junit.xml" --json "$LAB_OUT/conformance.json" \
    >"$LAB_OUT/conformance.out" 2>&1
  echo $? >"$LAB_OUT/conformance.rc"
  # Trace replay: the client side of captures/echo.pcap (sdpcat against sdp-testd's echo).
  timeout 300 "$CONF/sdp-conformance" --peer "$A" --cm ip --port-base 7000 \
    --replay "${LAB_REPO:-$PWD}/captures/echo.pcap" --side client \
    --junit "$LAB_OUT/conformance.replay.junit.xml" >"$LAB_OUT/conformance.replay.out" 2>&1
  echo $? >"$LAB_OUT/conformance.replay.rc"
fi
lab_signal conformance.done
exit 0
