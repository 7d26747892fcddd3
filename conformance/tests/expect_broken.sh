#!/usr/bin/env bash
# The suite against the deliberately broken engine (data may take the last credit, CA4-82) must
# fail, and fail for that reason: exit status 1 and at least one case whose reason names CA4-82.
set -u
tool=$1 json=$2
"$tool" --peer builtin --json "$json" >"$json.out" 2>&1
rc=$?
if [ "$rc" != 1 ]; then
  echo "FAIL: the suite exited $rc against the broken engine (expected 1: cases fail)"
  cat "$json.out"
  exit 1
fi
if ! grep -q 'CA4-82' "$json"; then
  echo "FAIL: the suite failed against the broken engine, but no case reports the CA4-82 breach"
  grep -E '^  (FAIL|ERROR)' "$json.out" | head -20
  exit 1
fi
echo "the suite caught the broken engine:"
grep -E '^  FAIL' -A1 "$json.out" | grep -B1 'CA4-82' | head -20
grep -E '^[0-9]+ cases' "$json.out"
