#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds a C consumer with pkg-config against it.
# Usage: check_install.sh BUILD_DIR SOURCE_DIR [EXTRA_CFLAGS]
set -euo pipefail
build=$1 src=$2 extra=${3:-}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/sdp/sdp.h lib/pkgconfig/libsdp.pc lib/cmake/InfiniSock/InfiniSockConfig.cmake bin/sdpcat bin/sdp-testd; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror $extra -o "$prefix/consumer" "$src/consumer.c" $(pkg-config --cflags --libs libsdp)
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer"
