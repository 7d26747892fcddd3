# shellcheck shell=bash
# Helpers for lab scripts, sourced (through BASH_ENV) before every script run by `lab.sh run`.
# Rendezvous goes through $LAB_SYNC, a directory shared read-write (9p, no cache) by both
# guests and the host.

# lab_signal NAME: tell the other host that NAME happened (creates $LAB_SYNC/NAME).
lab_signal() {
  local name="${1:?lab_signal: NAME missing}"
  : >"${LAB_SYNC:?}/$name"
  echo "lab[$LAB_HOST]: signalled '$name'" >&2
}

# lab_wait NAME [TIMEOUT_S]: wait until NAME has been signalled (by either host). Fails (status 1)
# after TIMEOUT_S seconds (default $LAB_WAIT_TIMEOUT, 120) or at once when the peer's script has
# already failed.
lab_wait() {
  local name="${1:?lab_wait: NAME missing}" timeout="${2:-${LAB_WAIT_TIMEOUT:-120}}"
  local start=$SECONDS peer="${LAB_PEER_HOST:-}"
  while [ ! -e "${LAB_SYNC:?}/$name" ]; do
    if [ -n "$peer" ] && [ -e "$LAB_SYNC/.lab-failed-$peer" ]; then
      echo "lab[$LAB_HOST]: lab_wait '$name': host $peer's script failed; giving up" >&2
      return 1
    fi
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      echo "lab[$LAB_HOST]: lab_wait '$name': timed out after ${timeout}s" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "lab[$LAB_HOST]: '$name' seen after $((SECONDS - start))s" >&2
}

# lab_wait_cm_listen [PORT] [TIMEOUT_S]: wait until a local rdma_cm id is listening (on PORT when
# given, e.g. 7174 for rping), as `rdma resource show cm_id` reports it. For servers started in
# the background: `rping -s ... & lab_wait_cm_listen 7174 && lab_signal listening`.
lab_wait_cm_listen() {
  local port="${1:-}" timeout="${2:-${LAB_WAIT_TIMEOUT:-120}}" start=$SECONDS
  local pat='state LISTEN'
  while :; do
    if rdma resource show cm_id 2>/dev/null | grep "$pat" | grep -q -- "${port:+:$port }"; then
      return 0
    fi
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      echo "lab[$LAB_HOST]: no rdma_cm listener${port:+ on port $port} after ${timeout}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# lab_wait_tcp_listen PORT [TIMEOUT_S]: wait until a local TCP socket listens on PORT (e.g. 18515
# for ibv_rc_pingpong's out-of-band exchange, perftest's 18515 without -R).
lab_wait_tcp_listen() {
  local port="${1:?lab_wait_tcp_listen: PORT missing}" timeout="${2:-${LAB_WAIT_TIMEOUT:-120}}"
  local start=$SECONDS
  until ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      echo "lab[$LAB_HOST]: no TCP listener on port $port after ${timeout}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# lab_log MSG...: a timestamped line on stderr (lands in <host>.out).
lab_log() { echo "lab[$LAB_HOST] $(cut -d' ' -f1 /proc/uptime)s: $*" >&2; }
