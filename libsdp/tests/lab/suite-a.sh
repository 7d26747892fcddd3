# Lab suite, host a (10.99.0.1): the servers. Sourced helpers: lab_signal, lab_wait,
# lab_wait_cm_listen (tools/lab/guest-lib.sh). Each scenario leaves NAME.* files in $LAB_OUT;
# libsdp/tests/lab/check.sh judges them on the host. A scenario that fails does not stop the
# next one; every step is bounded by `timeout`.
set -u
BIN=${LAB_BIN:?}
X=${LAB_XFER_BYTES:-67108864}

xfer_server() {  # NAME PORT ZCOPY_THRESHOLD
  local name=$1 port=$2 zc=$3
  head -c "$X" /dev/urandom >/tmp/in
  sha256sum </tmp/in | cut -d' ' -f1 >"$LAB_OUT/$name.sent"
  (timeout 600 "$BIN/sdpcat" -q -l "$port" --zcopy-threshold "$zc" --stats </tmp/in >/tmp/out \
    2>"$LAB_OUT/$name.stats"; echo $? >"$LAB_OUT/$name.rc") &
  lab_wait_cm_listen "$port" 60 && lab_signal "$name.listening"
  wait
  sha256sum </tmp/out | cut -d' ' -f1 >"$LAB_OUT/$name.recv"
  rm -f /tmp/in /tmp/out
}

lab_log "bcopy_64m"
xfer_server bcopy_64m 5001 0
lab_log "zcopy_64m"
xfer_server zcopy_64m 5002 65536

# Echo for the message and concurrency scenarios.
lab_log "sdp-testd"
"$BIN/sdp-testd" --port-base 7000 >"$LAB_OUT/testd.log" 2>&1 &
testd=$!
lab_wait_cm_listen 7019 60 && lab_signal testd.up
lab_wait echo.done 900
kill "$testd"; wait "$testd" 2>/dev/null

# Peer killed mid-transfer: a second sdp-testd whose discard service dies under the client.
lab_log "peer_killed"
"$BIN/sdp-testd" --port-base 8000 >"$LAB_OUT/testd-kill.log" 2>&1 &
victim=$!
lab_wait_cm_listen 8019 60 && lab_signal victim.up
lab_wait peer_killed.killed.streaming 120 && sleep 2
kill -9 "$victim"
lab_signal peer_killed.killed
wait "$victim" 2>/dev/null
lab_wait peer_killed.done 120

# Half-close in each direction.
lab_log "halfclose"
(timeout 120 "$BIN/sdp-labcheck" halfclose-server 5007 >"$LAB_OUT/halfclose.txt" 2>&1
  echo $? >"$LAB_OUT/halfclose.rc") &
lab_wait_cm_listen 5007 60 && lab_signal halfclose.listening
wait

# Native SDP service ID through AF_IB.
lab_log "native"
echo "native hello" >/tmp/native.in
(timeout 60 "$BIN/sdpcat" --native -l 5008 </tmp/native.in >"$LAB_OUT/native.recvdata" \
  2>"$LAB_OUT/native.err"; echo $? >"$LAB_OUT/native.rc") &
sleep 1
lab_signal native.listening
lab_wait native.done 90
kill %1 2>/dev/null
wait

# libafib's examples (libafib/examples/afib_NAME.c) as servers on every local GID with service
# ID SID; host b's client runs once this one listens (afib_NAME.listening) and says when it is
# done (afib_NAME.done).
afib_serve() {  # NAME SID
  local name=$1 sid=$2
  lab_log "afib_$name"
  (timeout 90 "$BIN/../libafib/afib-$name" listen "[::]:$sid" >"$LAB_OUT/afib_$name.out" \
    2>"$LAB_OUT/afib_$name.err"; echo $? >"$LAB_OUT/afib_$name.rc") &
  lab_wait_cm_listen "${sid#*:}" 60 && lab_signal "afib_$name.listening"
  lab_wait "afib_$name.done" 120
  wait
}
afib_serve stream sdp:7100      # AF_IB SOCK_STREAM echo (SDP)
afib_serve seqpacket ipcm:7200  # AF_IB SOCK_SEQPACKET: native RC messages
# Registered memory, RDMA read/write, immediate data, revocation (this host grants the region).
afib_serve rdma ipcm:7300

# The conformance suite (conformance/): host b's raw SDP endpoint drives a fresh sdp-testd (echo
# 7007, discard 7009, source 7019; IP CM service) through every scenario. Whether sdp-testd
# survived the run is part of the verdict (conformance.testd.alive).
lab_log "conformance"
"$BIN/sdp-testd" --port-base 7000 -v >"$LAB_OUT/conformance.testd.log" 2>&1 &
ctestd=$!
lab_wait_cm_listen 7007 60 && lab_wait_cm_listen 7009 60 && lab_wait_cm_listen 7019 60 &&
  lab_signal conformance.testd.up
lab_wait conformance.done 1000
kill -0 "$ctestd" 2>/dev/null && echo yes >"$LAB_OUT/conformance.testd.alive"
kill "$ctestd" 2>/dev/null
wait "$ctestd" 2>/dev/null
lab_log "suite done"
exit 0
