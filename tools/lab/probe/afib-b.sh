# shellcheck shell=bash
# AF_IB probe, host b: the connecting side of every trial, then rdma_getaddrinfo lookups.
set -uo pipefail
P="${AFIB_PROBE:?AFIB_PROBE (path of the built afib_probe) not set}"
"$P" gids
lab_wait gids
GID0="$(awk '$1 == "GID" && $2 == 0 { print $3 }' "$LAB_SYNC/gids-a")"
GID1="$(awk '$1 == "GID" && $2 == 1 { print $3 }' "$LAB_SYNC/gids-a")"
echo "host a: GID[0]=$GID0 GID[1]=$GID1"

trial() {
  local n="$1"
  shift
  lab_wait "t$n-ready"
  echo "=== trial $n: client: afib_probe $*"
  timeout 60 "$P" "$@" 2>&1 | sed 's/^/  /'
  lab_signal "t$n-done"
}

trial 0 inet-client "$LAB_PEER_IP" 7000
trial 1 client sdp "$GID1" -1 7001
trial 2 client sdp "$GID0" -1 7002
trial 3 client sdp "$GID1" -1 7003
trial 4 client sdp "$GID0" -1 7004
trial 5 client sdp "$GID1" 1 7005
trial 6 client sdp "$GID0" 0 7006
trial 7 client ib "$GID1" -1 7007
trial 8 client tcp "$GID1" -1 7008
trial 9 client tcp "$GID0" -1 7009
trial 10 client tcp "$GID1" -1 7010
# An IP-CM (AF_INET, RDMA_PS_TCP) client against the AF_IB listener on the same TCP-space SID.
trial 11 inet-client "$LAB_PEER_IP" 7011

gai() {
  echo "=== getaddrinfo: afib_probe gai $*"
  timeout 30 "$P" gai "$@" 2>&1 | sed 's/^/  /'
}
gai "$LAB_PEER_IP" 7000 0 inet
gai "$LAB_PEER_IP" 7000 0 ib
gai "$LAB_PEER_IP" 7000 'RAI_NUMERICHOST' ib
gai "$LAB_PEER_IP" 7000 'RAI_FAMILY|RAI_NUMERICHOST' ib
gai "$GID1" 7000 'RAI_FAMILY|RAI_NUMERICHOST' ib
gai "$GID0" 7000 'RAI_FAMILY|RAI_NUMERICHOST' ib
gai "$GID1" 7000 'RAI_FAMILY' ib
gai - 7000 'RAI_PASSIVE|RAI_FAMILY' ib
lab_signal client-finished
exit 0
