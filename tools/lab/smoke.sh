#!/usr/bin/env bash
# Smoke test of the two-host soft-RoCE lab: both guests see rxe0 ACTIVE, an rping (rdma_cm +
# RC SEND/READ/WRITE) runs a → b, and the capture taken on the link holds the CM handshake
# (REQ/REP/RTU MADs) and RC SEND packets. Exits 0 on success, non-zero with a reason otherwise.
#   usage: tools/lab/smoke.sh            (LAB_WORK overrides the work dir, default build/lab)
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$LAB_DIR/../.." && pwd)"
WORK="${LAB_WORK:-$REPO/build/lab}"
fail() {
  echo "smoke: FAIL: $*" >&2
  exit 1
}

missing=()
for c in qemu-system-x86_64 busybox modprobe ss tshark; do
  command -v "$c" >/dev/null || missing+=("$c")
done
[ ${#missing[@]} -eq 0 ] || fail "missing on this machine: ${missing[*]} (run tools/lab/deps.sh)"

mkdir -p "$WORK/runs"
out="$(mktemp -d "$WORK/runs/smoke-$(date +%Y%m%d-%H%M%S)-XXXX")"
start=$SECONDS
rc=0
"$LAB_DIR/lab.sh" run --work "$WORK" --timeout "${LAB_SMOKE_TIMEOUT:-300}" --out "$out" \
  "$LAB_DIR/smoke/a.sh" "$LAB_DIR/smoke/b.sh" || rc=$?
case "$rc" in
  0) ;;
  1) fail "a guest script failed (outputs above; results in $out)" ;;
  *) fail "lab infrastructure failure, lab.sh exit $rc (details above; results in $out)" ;;
esac
grep -q 'server ping data: rdma-ping-2' "$out/a.out" || fail "rping server did not receive 3 pings ($out/a.out)"
grep -q '^ping data: rdma-ping-2' "$out/b.out" || fail "rping client did not complete 3 pings ($out/b.out)"

pcap="$out/wire.pcap"
[ -s "$pcap" ] || fail "no capture at $pcap"
fields="$out/wire.fields"
# RoCEv2 (UDP 4791) is decoded as InfiniBand by default. Columns: BTH opcode, MAD class, attribute.
if ! tshark -r "$pcap" -Y infiniband -T fields -E separator=' ' \
  -e infiniband.bth.opcode -e infiniband.mad.mgmtclass -e infiniband.mad.attributeid \
  >"$fields" 2>"$out/tshark.err"; then
  cat "$out/tshark.err" >&2
  fail "tshark could not read $pcap"
fi
count() { awk -v o="$1" -v c="${2:-}" -v a="${3:-}" \
  '$1 == o && (c == "" || $2 == c) && (a == "" || $3 == a) { n++ } END { print n + 0 }' "$fields"; }
ib=$(wc -l <"$fields")
send=$(count 4)       # RC SEND Only
read_req=$(count 12)  # RC RDMA READ Request
write=$(count 10)     # RC RDMA WRITE Only
req=$(count 100 0x07 0x0010)  # UD SEND Only on QP1 carrying a CM MAD: ConnectRequest
rep=$(count 100 0x07 0x0013)  # ConnectReply
rtu=$(count 100 0x07 0x0014)  # ReadyToUse
dreq=$(count 100 0x07 0x0015) # DisconnectRequest
echo "smoke: capture $pcap: $ib InfiniBand (RoCEv2) packets: RC SEND $send, RDMA READ req $read_req, RDMA WRITE $write; CM REQ $req, REP $rep, RTU $rtu, DREQ $dreq"
[ "$ib" -gt 0 ] || fail "tshark decodes no InfiniBand/RoCEv2 packet in $pcap"
[ "$send" -ge 3 ] || fail "expected at least 3 RC SEND Only packets in $pcap, saw $send"
if [ "$req" -lt 1 ] || [ "$rep" -lt 1 ] || [ "$rtu" -lt 1 ]; then
  fail "CM handshake incomplete in $pcap (REQ $req, REP $rep, RTU $rtu)"
fi
cat "$out/timing.txt"
echo "smoke: PASS in $((SECONDS - start))s (results in $out)"
