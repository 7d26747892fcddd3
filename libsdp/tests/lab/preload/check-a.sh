# Preload lab, host a (10.99.0.1): preload-check's echo server, unmodified, under sdp_run (on
# 7400; on 7410 after exec).
set -u
BIN=${LAB_BIN:?}
"$BIN/sdp_run" -v "$BIN/preload-check" server 7400 >"$LAB_OUT/server.out" 2>"$LAB_OUT/server.log" &
srv=$!
# The same echo server started the way a re-executing server starts: it listens, then execs
# itself onto the inherited listening socket.
"$BIN/sdp_run" -v "$BIN/preload-check" server-exec 7410 >"$LAB_OUT/server-exec.out" \
  2>"$LAB_OUT/server-exec.log" &
srv2=$!
# And a plain TCP server (no sdp_run, so no SDP listener): SDP clients must fall back.
"$BIN/preload-check" server 7420 >"$LAB_OUT/tcp-server.out" 2>"$LAB_OUT/tcp-server.log" &
srv3=$!
lab_wait_cm_listen 7400 60 && lab_wait_cm_listen 7410 60 && lab_signal server.up
lab_wait client.done 600
kill "$srv" "$srv2" "$srv3"; wait "$srv" "$srv2" "$srv3" 2>/dev/null
true
