#!/usr/bin/env bash
# The whole test suite: unit, rule, malformed-peer and randomized tests and the capture checks
# under the dev build and under ASan+UBSan; the lab tests (two soft-RoCE guests: SDP over real RC
# queue pairs); then every libFuzzer target for a bounded time on its committed seed corpus.
# FUZZ_SECONDS (default 60) bounds each fuzz target; LAB=0 skips the lab (not for CI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash tools/lab/deps.sh
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

echo "== format check"
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find libsdp bench -name '*.[ch]pp')
clang-format --dry-run --Werror $files

for preset in dev asan; do
  echo "== build + test: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$JOBS"
  ctest --preset "$preset" -j "$JOBS"
done

if [ "${LAB:-1}" != 0 ]; then
  echo "== lab: SDP over rxe in two guests (ctest --preset lab)"
  ctest --preset lab
  echo "== lab again with the ASan+UBSan build (8 MiB transfers)"
  bash libsdp/tests/lab/run_suite.sh build/asan/libsdp build/asan/lab-sdp 8388608
fi

echo "== fuzz (${FUZZ_SECONDS}s per target)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$JOBS" --target fuzz_wire fuzz_engine fuzz_ibsniff fuzz_filter \
  fuzz_afib_addr
# target:corpus:max_len[:dictionary] (ibsniff's seeds hold whole captures, several frames each)
for spec in libsdp/fuzz/fuzz_wire:libsdp/fuzz/corpus/wire:4096 \
  libsdp/fuzz/fuzz_engine:libsdp/fuzz/corpus/engine:4096 \
  tools/ibsniff/fuzz/fuzz_ibsniff:tools/ibsniff/fuzz/corpus:65536 \
  tools/ibsniff/fuzz/fuzz_filter:tools/ibsniff/fuzz/filter_corpus:512:tools/ibsniff/fuzz/filter.dict \
  libafib/fuzz/fuzz_afib_addr:libafib/fuzz/corpus:256; do
  IFS=: read -r bin corpus max_len dict <<<"$spec"
  work=$(mktemp -d)
  # The committed corpus is only read: new inputs go to a scratch directory.
  "build/fuzz/$bin" -max_total_time="$FUZZ_SECONDS" -max_len="$max_len" -print_final_stats=1 \
    ${dict:+-dict="$dict"} "$work" "$corpus" 2>&1 | tail -n 12
  rm -rf "$work"
done
echo "== all tests passed"
