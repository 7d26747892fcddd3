#!/usr/bin/env bash
# Regenerates every lab capture in captures/ (described in captures/README.md): one boot of the
# two-host soft-RoCE lab per scenario, the wire recorded by qemu's filter-dump on host a's link,
# reduced to RoCEv2 frames (UDP 4791) with tshark, plus each host's SDP_TRACE log.
# Needs the dev build (sdpcat, sdp-labcheck) and the lab packages (tools/lab/deps.sh).
#   captures/make.sh [SCENARIO...]     default: setup bcopy zcopy abort halfclose echo
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LAB_BIN:-$PWD/build/dev/libsdp}
for t in sdpcat sdp-labcheck sdp-testd; do
  [ -x "$BIN/$t" ] || { echo "make.sh: $BIN/$t missing: cmake --preset dev && cmake --build --preset dev" >&2; exit 2; }
done
command -v tshark >/dev/null || { echo "make.sh: tshark missing (tools/lab/deps.sh)" >&2; exit 2; }
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(setup bcopy zcopy abort halfclose echo)
work=$PWD/build/captures
mkdir -p "$work"
for name in "${scenarios[@]}"; do
  echo "== capture $name"
  rm -rf "${work:?}/$name"
  bash tools/lab/lab.sh run --timeout 300 --out "$work/$name" --env LAB_BIN="$BIN" \
    --env CAPTURE="$name" --capture "$work/$name/raw.pcap" \
    captures/scenario-a.sh captures/scenario-b.sh
  # Only the RoCEv2 frames (the guests' IPv6 neighbour chatter is left out).
  tshark -r "$work/$name/raw.pcap" -Y 'udp.port == 4791' -w "captures/$name.pcap" -F pcap 2>/dev/null
  cp "$work/$name/a/$name.a.trace.jsonl" "$work/$name/b/$name.b.trace.jsonl" captures/
  size=$(stat -c %s "captures/$name.pcap")
  [ "$size" -le 1048576 ] || { echo "make.sh: captures/$name.pcap is $size bytes (> 1 MiB)" >&2; exit 1; }
  echo "captures/$name.pcap: $size bytes, $(tshark -r "captures/$name.pcap" 2>/dev/null | wc -l) frames"
done
