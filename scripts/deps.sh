#!/usr/bin/env bash
# Installs the Debian 12 packages InfiniSock builds and tests with (no-op when all are present);
# the last line: the programs the preload shim is tested with on the host (preload.host).
set -euo pipefail
PKGS=(
  cmake ninja-build g++ clang libclang-rt-14-dev pkg-config clang-format python3
  libibverbs-dev librdmacm-dev libpcap-dev
  libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libfmt-dev zlib1g-dev nlohmann-json3-dev groff-base
  redis-server redis-tools nginx-light curl wrk iperf3
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
