# shellcheck shell=bash
# Smoke test, host a (10.99.0.1): rxe0 present and ACTIVE, then an rping server (3 iterations).
set -euo pipefail
lab_log "ibv_devices"
ibv_devices
ibv_devices | grep -qw rxe0 || { echo "SMOKE: ibv_devices does not list rxe0" >&2; exit 1; }
ibv_devinfo -d rxe0 | grep -q PORT_ACTIVE || { ibv_devinfo -d rxe0 >&2; echo "SMOKE: rxe0 port is not PORT_ACTIVE" >&2; exit 1; }
echo "rxe0 port 1: PORT_ACTIVE"
rdma link show
ibv_devinfo -d rxe0 -v | grep -E 'GID\[' || true

lab_log "starting rping server"
timeout 120 rping -s -a "$LAB_SELF_IP" -C 3 -v &
server=$!
lab_wait_cm_listen 7174 30 || { kill "$server" 2>/dev/null; echo "SMOKE: rping server never listened" >&2; exit 1; }
lab_signal listening
rc=0
wait "$server" || rc=$?
lab_log "rping server exited with $rc"
exit "$rc"
