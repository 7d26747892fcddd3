#!/usr/bin/env bash
# Builds afib_probe on the host and runs the AF_IB experiment on the two lab hosts.
#   usage: tools/lab/probe/run-afib.sh [lab.sh run options]   (e.g. --capture /work/afib.pcap)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="${LAB_WORK:-$REPO/build/lab}"
mkdir -p "$WORK/probe"
cc -Wall -Wextra -Werror -O2 -o "$WORK/probe/afib_probe" "$HERE/afib_probe.c" -lrdmacm -libverbs
exec "$HERE/../lab.sh" run --work "$WORK" --env "AFIB_PROBE=$WORK/probe/afib_probe" "$@" \
  "$HERE/afib-a.sh" "$HERE/afib-b.sh"
