#!/usr/bin/env bash
# Runs the whole lab suite once with the binaries in BIN and judges every scenario.
#   run_suite.sh BIN OUT [XFER_BYTES]
# CTest runs it through the lab.sdp.* tests with the dev build; scripts/test.sh also runs it with
# the ASan+UBSan build (smaller transfers), where any sanitizer report fails the run.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
BIN=$(cd "${1:?usage: run_suite.sh BIN OUT [XFER_BYTES]}" && pwd)
OUT=${2:?usage: run_suite.sh BIN OUT [XFER_BYTES]}
BYTES=${3:-67108864}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
bash "$repo/tools/lab/lab.sh" run --timeout 1500 --out "$OUT" --env LAB_BIN="$BIN" \
  --env LAB_XFER_BYTES="$BYTES" --env LSAN_OPTIONS="suppressions=$here/lsan.supp" \
  "$here/suite-a.sh" "$here/suite-b.sh" || echo "lab run failed (the checks below say where)"
rc=0
for s in bcopy_64m zcopy_64m messages_10k concurrent_100 source peer_killed refused unreachable halfclose native afib_resolve afib_stream afib_seqpacket afib_rdma conformance; do
  bash "$here/check.sh" "$OUT" "$s" | tail -n 1 || rc=1
done
if grep -rl "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$OUT"/a "$OUT"/b "$OUT"/*.out 2>/dev/null; then
  echo "FAIL: sanitizer reports in the files above"
  rc=1
fi
exit $rc
