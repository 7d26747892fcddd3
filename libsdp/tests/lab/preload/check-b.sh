# Preload lab, host b (10.99.0.2): preload-check's client checks against host a, under sdp_run.
set -u
BIN=${LAB_BIN:?}
lab_wait server.up 120
timeout 300 "$BIN/sdp_run" -v "$BIN/preload-check" client 10.99.0.1 7400 \
  >"$LAB_OUT/client.out" 2>"$LAB_OUT/client.log"
echo $? >"$LAB_OUT/client.rc"
timeout 120 "$BIN/sdp_run" -v "$BIN/preload-check" pingpong 10.99.0.1 7410 20 \
  >"$LAB_OUT/after-exec.out" 2>"$LAB_OUT/after-exec.log"
timeout 120 "$BIN/sdp_run" -v "$BIN/preload-check" fallback 10.99.0.1 7420 \
  >"$LAB_OUT/fallback.out" 2>"$LAB_OUT/fallback.log"
echo $? >"$LAB_OUT/fallback.rc"
lab_signal client.done
