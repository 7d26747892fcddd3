# Capture scenarios, host a (10.99.0.1, the server). CAPTURE names the scenario; see make.sh.
set -u
BIN=${LAB_BIN:?}
export SDP_TRACE=$LAB_OUT/$CAPTURE.a.trace.jsonl
serve() {  # PORT SDPCAT-OPTIONS...: one sdpcat -l in the background, signalled when listening
  local port=$1; shift
  (timeout 120 "$BIN/sdpcat" -q -l "$port" "$@" </tmp/in >/tmp/out 2>"$LAB_OUT/sdpcat.err"
    echo $? >"$LAB_OUT/sdpcat.rc") &
  lab_wait_cm_listen "$port" 60 && lab_signal listening
  wait
}
case "$CAPTURE" in
  setup)  # connection setup, one short message each way, graceful close
    echo "hello from a" >/tmp/in
    serve 5001 ;;
  bcopy)  # 256 KiB each way by BCopy (ZCopy off)
    head -c 262144 /dev/urandom >/tmp/in
    serve 5002 --zcopy-threshold 0 ;;
  zcopy)  # 256 KiB from b by ZCopy (SrcAvail + RDMA READ), nothing back
    : >/tmp/in
    serve 5003 ;;
  abort)  # the client sends 64 KiB, then closes with SO_LINGER 0: AbortConn, DREQ/DREP
    : >/tmp/in
    serve 5004 ;;
  halfclose)  # both half-close orders (sdp-labcheck halfclose-server)
    (timeout 120 "$BIN/sdp-labcheck" halfclose-server 5005 >"$LAB_OUT/labcheck.txt" 2>&1) &
    lab_wait_cm_listen 5005 60 && lab_signal listening
    wait ;;
  echo)  # sdp-testd, the conformance suite's reference peer: its echo service (port 7007)
    timeout 120 "$BIN/sdp-testd" --port-base 7000 >"$LAB_OUT/testd.log" 2>&1 &
    testd=$!
    lab_wait_cm_listen 7007 60 && lab_signal listening
    lab_wait echo.done 120
    kill "$testd" 2>/dev/null
    wait ;;
  *) echo "unknown capture scenario $CAPTURE" >&2; exit 2 ;;
esac
sha256sum </tmp/out >"$LAB_OUT/recv.sha256" 2>/dev/null
exit 0
