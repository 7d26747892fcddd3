#!/usr/bin/env bash
# Runs inside a lab guest (chrooted into the host's root, overlaid with tmpfs), as root.
# Brings up lo, eth0 and rxe0 for the role, then runs the role's script with the lab
# environment and guest-lib.sh, writing <role>.out / <role>.rc into the run share (/lab).
set -uo pipefail
role="${1:?role}"
ctl=/lab/.lab
# shellcheck source=/dev/null
. "$ctl/config"   # LAB_REPO LAB_TIMEOUT LAB_WAIT_TIMEOUT
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "lab-guest[$role]: $*"; }
fatal() {
  say "SETUP FAILED: $*"
  echo "lab setup failed on host $role: $*" >>"/lab/$role.out"
  echo 125 >"/lab/$role.rc"
  : >"/lab/sync/.lab-failed-$role"
  exit 125
}

case "$role" in
  a) self=10.99.0.1 peer=10.99.0.2 peer_role=b ;;
  b) self=10.99.0.2 peer=10.99.0.1 peer_role=a ;;
  *) fatal "unknown role '$role'" ;;
esac
echo "setup $(uptime_s)" >"$ctl/$role.started"

hostname "lab-$role" 2>/dev/null || true
printf '10.99.0.1\tlab-a\n10.99.0.2\tlab-b\n' >>/etc/hosts 2>/dev/null || true
ip link set lo up || fatal "ip link set lo up"
ip addr add "$self/24" dev eth0 || fatal "ip addr add $self/24 dev eth0"
ip link set eth0 up || fatal "ip link set eth0 up"
rdma link add rxe0 type rxe netdev eth0 || fatal "rdma link add rxe0 type rxe netdev eth0"
state=/sys/class/infiniband/rxe0/ports/1/state
for _ in $(seq 100); do
  grep -q ACTIVE "$state" 2>/dev/null && break
  sleep 0.1
done
grep -q ACTIVE "$state" 2>/dev/null || fatal "rxe0 port 1 not ACTIVE: $(cat "$state" 2>&1)"
for _ in $(seq 50); do
  [ -e /dev/infiniband/uverbs0 ] && [ -e /dev/infiniband/rdma_cm ] && break
  sleep 0.1
done
[ -e /dev/infiniband/uverbs0 ] || fatal "/dev/infiniband/uverbs0 missing"
[ -e /dev/infiniband/rdma_cm ] || fatal "/dev/infiniband/rdma_cm missing"
mkdir -p "/lab/$role"

say "network and rxe0 up, running script (up=$(uptime_s)s)"
echo "script $(uptime_s)" >>"$ctl/$role.started"
cd "$LAB_REPO" || fatal "cd $LAB_REPO"
extra=()
[ -s "$ctl/env" ] && mapfile -d '' extra <"$ctl/env"
env -i "${extra[@]}" \
  PATH="$PATH" HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 \
  LAB_HOST="$role" LAB_PEER_HOST="$peer_role" LAB_SELF_IP="$self" LAB_PEER_IP="$peer" \
  LAB_IFACE=eth0 LAB_RDMA_DEV=rxe0 LAB_SYNC=/lab/sync LAB_OUT="/lab/$role" LAB_REPO="$LAB_REPO" \
  LAB_TIMEOUT="$LAB_TIMEOUT" LAB_WAIT_TIMEOUT="$LAB_WAIT_TIMEOUT" \
  LAB_SCRIPT="$(cat "$ctl/script-$role.path")" \
  BASH_ENV="$ctl/guest-lib.sh" \
  bash "$ctl/script-$role.sh" </dev/null >"/lab/$role.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || : >"/lab/sync/.lab-failed-$role"
echo "end $(uptime_s)" >>"$ctl/$role.started"
echo "$rc" >"/lab/$role.rc"
say "script exited with $rc (up=$(uptime_s)s)"
sync
exit 0
