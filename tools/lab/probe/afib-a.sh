# shellcheck shell=bash
# AF_IB probe, host a: the listening side of every trial (see probe/run-afib.sh).
set -uo pipefail
P="${AFIB_PROBE:?AFIB_PROBE (path of the built afib_probe) not set}"
"$P" gids | tee "$LAB_SYNC/gids-a"
lab_signal gids

# trial N KIND ARGS...: run one listener, signal tN-ready once it listens (or failed), wait for
# the client's tN-done, then collect it.
trial() {
  local n="$1"
  shift
  local log="$LAB_OUT/t$n.server.log"
  echo "=== trial $n: server: afib_probe $*"
  "$P" "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    grep -q LISTENING "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  lab_signal "t$n-ready"
  lab_wait "t$n-done" 120 || true
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null && echo "(server still waiting: killed)" >>"$log"
  wait "$pid" 2>/dev/null
  sed 's/^/  /' "$log"
}

trial 0 inet-server "$LAB_SELF_IP" 7000 30
trial 1 server sdp 1 7001 30
trial 2 server sdp 0 7002 30
trial 3 server sdp -1 7003 30
trial 4 server sdp -1 7004 30
trial 5 server sdp -1 7005 30
trial 6 server sdp -1 7006 30
trial 7 server ib -1 7007 30
trial 8 server tcp -1 7008 30
trial 9 server tcp -1 7009 30
trial 10 server tcp 1 7010 30
trial 11 server tcp -1 7011 30
lab_wait client-finished 120
exit 0
