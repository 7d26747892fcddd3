#!/bin/busybox sh
# shellcheck shell=dash
# /init of the lab's initramfs (runs as PID 1 in the guest; busybox only).
# Loads the module closure, mounts the host's root read-only over 9p with a tmpfs overlay on
# top, mounts the per-run share at /lab, chroots and runs /lab/.lab/guest-run.sh for the role
# given on the kernel command line (lab.role=a|b), then powers the guest off.
/bin/busybox mkdir -p /dev /proc /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin

off() {
  sync
  echo o >/proc/sysrq-trigger
  sleep 30
}
fail() {
  echo "LAB-INIT-FAIL: $*"
  off
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
role=
read -r cmdline </proc/cmdline
for w in $cmdline; do
  case "$w" in lab.role=*) role="${w#lab.role=}" ;; esac
done
[ -n "$role" ] || fail "no lab.role= on the kernel command line"
echo "lab-init: role=$role up=$(cut -d' ' -f1 /proc/uptime)s"

while read -r m; do
  insmod "/mods/$m" || fail "insmod $m"
done </mods/order

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host ||
  fail "mount 9p hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs /rw"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot ||
  fail "mount overlay"
mkdir -p /newroot/lab /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 lab /newroot/lab ||
  fail "mount 9p lab"
mount -t proc proc /newroot/proc || fail "mount proc"
mount -t sysfs sysfs /newroot/sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs /newroot/dev || fail "mount devtmpfs"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts || true
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm || true
# /tmp stays part of the overlay: the host's /tmp is visible (a clone under /tmp works), and
# what a guest writes there lands in the tmpfs upper layer.
chmod 1777 /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "mount /run"
[ -f /newroot/lab/.lab/guest-run.sh ] || fail "/lab/.lab/guest-run.sh missing in the run share"

echo "lab-init: chroot up=$(cut -d' ' -f1 /proc/uptime)s"
chroot /newroot /bin/bash /lab/.lab/guest-run.sh "$role"
echo "lab-init: guest-run exited with $? up=$(cut -d' ' -f1 /proc/uptime)s"
off
