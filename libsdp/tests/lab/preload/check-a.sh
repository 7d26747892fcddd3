# Preload lab, host a (10.99.0.1): preload-check's echo server, unmodified, under sdp_run.
set -u
BIN=${LAB_BIN:?}
"$BIN/sdp_run" -v "$BIN/preload-check" server 7400 >"$LAB_OUT/server.out" 2>"$LAB_OUT/server.log" &
srv=$!
lab_wait_cm_listen 7400 60 && lab_signal server.up
lab_wait client.done 600
kill "$srv"; wait "$srv" 2>/dev/null
true
