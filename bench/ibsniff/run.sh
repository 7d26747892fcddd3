#!/usr/bin/env bash
# ibsniff speed, side by side in one run (bench/README.md):
#   (a) a plain libpcap read loop over the capture (ibsniff_pcap_loop): the floor;
#   (b) ibsniff -r BIG -T fields -e F...;
#   (c) tshark -n -r BIG -T fields -E occurrence=a -e F... with the same fields;
# on a capture of >= 1,000,000 packets built by repeating the lab captures (captures/*.pcap,
# ibsniff_make_big_capture). The outputs of (b) and (c) must be byte-identical. Prints the wall
# times and the two ratios: tshark / ibsniff (goal >= 50x) and libpcap loop / ibsniff, i.e.
# ibsniff's speed as a fraction of the bare read loop (goal >= 0.3x).
#
# Builds nothing: build the release binaries first,
#   cmake --preset release
#   cmake --build --preset release -j2 --target ibsniff ibsniff_make_big_capture ibsniff_pcap_loop
# then   bench/ibsniff/run.sh
#
# Environment (defaults in brackets):
#   BUILD      release build directory [build/release]
#   IBSNIFF    ibsniff binary [$BUILD/tools/ibsniff/ibsniff]
#   MAKE_CAP   capture builder [$BUILD/bench/ibsniff_make_big_capture]
#   PCAP_LOOP  libpcap read loop [$BUILD/bench/ibsniff_pcap_loop]
#   TSHARK     tshark binary [tshark]
#   PACKETS    minimum packets in the capture [1000000]
#   WORK       directory for the capture and the outputs [$BUILD/bench/ibsniff-work]; about
#              1.2 GB per million packets; removed at the end unless KEEP=1
#   RUNS       runs of (a) and (b), interleaved; the best of each is kept [5]
#   TSHARK_RUNS  runs of (c), the best kept [1] (about a minute per million packets)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build/release}
IBSNIFF=${IBSNIFF:-$BUILD/tools/ibsniff/ibsniff}
MAKE_CAP=${MAKE_CAP:-$BUILD/bench/ibsniff_make_big_capture}
PCAP_LOOP=${PCAP_LOOP:-$BUILD/bench/ibsniff_pcap_loop}
TSHARK=${TSHARK:-tshark}
PACKETS=${PACKETS:-1000000}
WORK=${WORK:-$BUILD/bench/ibsniff-work}
RUNS=${RUNS:-5}
TSHARK_RUNS=${TSHARK_RUNS:-1}
KEEP=${KEEP:-0}

die() {
  echo "run.sh: $*" >&2
  exit 1
}
for b in "$IBSNIFF" "$MAKE_CAP" "$PCAP_LOOP"; do
  [[ -x $b ]] || die "$b not found: build the release targets first (see the top of $0)"
done
command -v "$TSHARK" >/dev/null || die "tshark not found (TSHARK=...)"

# Transport fields tshark 4.0 shows exactly as ibsniff does on these captures (see
# tools/ibsniff/tests/captures_test.cpp). No infiniband_sdp.*: tshark does not follow SDP over the
# IP CM service, so those are timed apart (ibsniff only) below.
fields=(
  frame.number frame.time_relative frame.len ip.src ip.dst udp.srcport
  infiniband.bth.opcode infiniband.bth.se infiniband.bth.destqp infiniband.bth.psn
  infiniband.aeth.syndrome infiniband.aeth.msn
  infiniband.reth.va infiniband.reth.r_key infiniband.reth.dmalen
  infiniband.mad.attributeid infiniband.mad.transactionid infiniband.cm.req.serviceid
  infiniband.invariant.crc
)
sdp_fields=(infiniband_sdp.bsdh.mid infiniband_sdp.bsdh.bufs infiniband_sdp.bsdh.len
  infiniband_sdp.bsdh.mseq infiniband_sdp.bsdh.mseqack)
e=()
for f in "${fields[@]}"; do e+=(-e "$f"); done
e_sdp=("${e[@]}")
for f in "${sdp_fields[@]}"; do e_sdp+=(-e "$f"); done
# -T fields decodes what its columns show: with no ibsniff.icrc.bad column the ICRCs are not
# verified (tshark 4.0 never verifies them). Timed apart with that column, every ICRC checked.
e_crc=("${e[@]}" -e ibsniff.icrc.bad)
# The unrelated payload heuristics, and tshark's SDP, off (tools/ibsniff/tests/tshark.hpp).
no_heur=()
for h in rpcrdma_infiniband smb_direct_infiniband nvme_rdma lnet_ib smcr_infiniband \
  fc_infiniband iser_infiniband mellanox_eoib eth_over_ib drbd_rdma iser_ib_private \
  nvme_rdma_cm_private lnet_ib_cm_private sdp_infiniband sdp_ib_private; do
  no_heur+=(--disable-heuristic "$h")
done

mkdir -p "$WORK"
[[ $KEEP == 1 ]] || trap 'rm -f "$WORK"/big.pcap "$WORK"/*.out "$WORK"/*.err' EXIT
big=$WORK/big.pcap
echo "capture: $("$MAKE_CAP" "$big" "$PACKETS" "$root"/captures/{setup,bcopy,zcopy,abort,halfclose}.pcap)" \
  "-> $big ($(du -m "$big" | cut -f1) MiB)"
cat "$big" >/dev/null # into the page cache: every run reads it from memory

# timed NAME OUT CMD...: runs CMD with stdout to OUT, stderr to OUT.err; sets $secs; fails on a
# non-zero exit status.
timed() {
  local name=$1 out=$2
  shift 2
  local t0=$EPOCHREALTIME
  "$@" >"$out" 2>"$out.err" || die "$name failed (exit $?): $(head -c 500 "$out.err")"
  local t1=$EPOCHREALTIME
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}
best() { # best CURRENT NEW -> the smaller
  awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'
}

t_loop="" t_ib="" t_sdp="" t_crc="" t_ts=""
for ((i = 1; i <= RUNS; i++)); do
  timed "libpcap loop" "$WORK/loop.out" "$PCAP_LOOP" "$big"
  t_loop=$(best "$t_loop" "$secs")
  timed ibsniff "$WORK/ibsniff.out" "$IBSNIFF" -r "$big" -T fields "${e[@]}"
  t_ib=$(best "$t_ib" "$secs")
  timed "ibsniff (SDP fields)" "$WORK/ibsniff-sdp.out" "$IBSNIFF" -r "$big" -T fields "${e_sdp[@]}"
  t_sdp=$(best "$t_sdp" "$secs")
  timed "ibsniff (ICRC checked)" "$WORK/ibsniff-crc.out" "$IBSNIFF" -r "$big" -T fields "${e_crc[@]}"
  t_crc=$(best "$t_crc" "$secs")
done
for ((i = 1; i <= TSHARK_RUNS; i++)); do
  timed tshark "$WORK/tshark.out" "$TSHARK" -n -r "$big" "${no_heur[@]}" -T fields \
    -E occurrence=a "${e[@]}"
  t_ts=$(best "$t_ts" "$secs")
done

lines=$(wc -l <"$WORK/ibsniff.out")
if ! cmp -s "$WORK/ibsniff.out" "$WORK/tshark.out"; then
  echo "FAIL: ibsniff and tshark outputs differ ($WORK/ibsniff.out vs $WORK/tshark.out):" >&2
  diff "$WORK/ibsniff.out" "$WORK/tshark.out" | head -20 >&2 || true
  trap - EXIT
  exit 1
fi
packets=${lines// /}
echo "packets: $packets; ibsniff and tshark -T fields outputs identical ($(du -m "$WORK/ibsniff.out" | cut -f1) MiB, ${#fields[@]} fields)"
echo "libpcap read loop:           $t_loop s   (best of $RUNS)"
echo "ibsniff -T fields:           $t_ib s   (best of $RUNS)"
echo "ibsniff -T fields + SDP:     $t_sdp s   (best of $RUNS; ${#sdp_fields[@]} infiniband_sdp.* fields more)"
echo "ibsniff -T fields + ICRC:    $t_crc s   (best of $RUNS; ibsniff.icrc.bad more: every ICRC verified)"
echo "tshark -T fields:            $t_ts s   (best of $TSHARK_RUNS)"
awk -v l="$t_loop" -v i="$t_ib" -v c="$t_crc" -v s="$t_sdp" -v t="$t_ts" -v n="$packets" 'BEGIN {
  printf "ibsniff: %.2f M packets/s, %.0f ns/packet; libpcap loop: %.0f ns/packet\n",
         n / i / 1e6, i / n * 1e9, l / n * 1e9
  printf "ibsniff vs tshark: %.1fx faster (goal >= 50x)\n", t / i
  printf "  (with every ICRC verified: %.1fx; with the SDP fields: %.1fx)\n", t / c, t / s
  printf "ibsniff vs libpcap loop: %.2fx (goal >= 0.3x)\n", l / i
}'
