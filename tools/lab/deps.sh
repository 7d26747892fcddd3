#!/usr/bin/env bash
# Installs the Debian 12 packages of the two-host soft-RoCE lab (no-op when all are present).
# linux-image-amd64 only provides the guests' kernel (and its rdma_rxe module); the host keeps
# running its own kernel.
set -euo pipefail
PKGS=(
  qemu-system-x86 linux-image-amd64 busybox-static kmod
  rdma-core ibverbs-utils ibverbs-providers rdmacm-utils perftest
  libibverbs-dev librdmacm-dev gcc libc6-dev
  tcpdump tshark iproute2 xz-utils binutils
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "lab deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
echo "lab deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no instead of prompting.
echo 'wireshark-common wireshark-common/install-setuid boolean false' | "${SUDO[@]}" debconf-set-selections
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
