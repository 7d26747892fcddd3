#!/usr/bin/env bash
# The main job on the embedded default: build (release) and run sdp-demo over the pipe fabric.
# Extra arguments go to sdp-demo (see: build/release/libsdp/sdp-demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target sdp-demo
exec build/release/libsdp/sdp-demo "$@"
