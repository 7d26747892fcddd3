# shellcheck shell=bash
# Smoke test, host b (10.99.0.2): rxe0 present and ACTIVE, then an rping client to host a.
set -euo pipefail
lab_log "ibv_devices"
ibv_devices
ibv_devices | grep -qw rxe0 || { echo "SMOKE: ibv_devices does not list rxe0" >&2; exit 1; }
ibv_devinfo -d rxe0 | grep -q PORT_ACTIVE || { ibv_devinfo -d rxe0 >&2; echo "SMOKE: rxe0 port is not PORT_ACTIVE" >&2; exit 1; }
echo "rxe0 port 1: PORT_ACTIVE"

lab_wait listening 120
lab_log "starting rping client"
rc=0
timeout 120 rping -c -a "$LAB_PEER_IP" -C 3 -v || rc=$?
lab_log "rping client exited with $rc"
exit "$rc"
