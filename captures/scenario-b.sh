# Capture scenarios, host b (10.99.0.2, the client). See scenario-a.sh and make.sh.
set -u
BIN=${LAB_BIN:?}
export SDP_TRACE=$LAB_OUT/$CAPTURE.b.trace.jsonl
A=$LAB_PEER_IP
lab_wait listening 120 || exit 1
case "$CAPTURE" in
  setup)
    echo "hello from b" | timeout 60 "$BIN/sdpcat" -q "$A" 5001 ;;
  bcopy)
    head -c 262144 /dev/urandom | timeout 60 "$BIN/sdpcat" -q --zcopy-threshold 0 "$A" 5002 >/dev/null ;;
  zcopy)
    head -c 262144 /dev/urandom | timeout 60 "$BIN/sdpcat" -q --zcopy-threshold 65536 --chunk 262144 \
      "$A" 5003 >/dev/null ;;
  abort)
    timeout 60 "$BIN/sdp-labcheck" abort "$A" 5004 65536 ;;
  halfclose)
    timeout 60 "$BIN/sdp-labcheck" halfclose "$A" 5005 ;;
  echo)  # 100,000 bytes to the echo service, half-close, read the echo to its DisConn
    head -c 100000 /dev/urandom >/tmp/echo.in
    timeout 60 "$BIN/sdpcat" -q "$A" 7007 </tmp/echo.in >/tmp/echo.out
    ok=$?
    cmp /tmp/echo.in /tmp/echo.out || ok=1
    lab_signal echo.done
    (exit $ok) ;;
esac
rc=$?
echo "$CAPTURE client exit $rc"
exit $rc
