#!/usr/bin/env bash
# The two-host soft-RoCE lab: two TCG guests (Linux 6.1, rdma_rxe) joined by one virtual Ethernet
# link, each running the host's own root (read-only 9p + tmpfs overlay). See tools/lab/README.md.
#
#   lab.sh prepare [--work DIR]
#   lab.sh run [--work DIR] [--timeout S] [--out DIR] [--capture FILE] [--mem MB]
#              [--env NAME=VALUE]... SCRIPT_A SCRIPT_B
#
# Exit status of `run`: 0 both scripts exited 0; 1 a script failed; 2 infrastructure failure
# (bad usage, boot failure, a guest still running after --timeout).
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$LAB_DIR/../.." && pwd)"
# crc32_generic: rdma_rxe allocates the "crc32" shash (ICRC) when a link is added.
MODULES=(virtio_pci virtio_net 9pnet_virtio 9p overlay crc32_generic rdma_rxe ib_uverbs rdma_ucm)
PREPARE_VERSION=3

say() { echo "lab: $*" >&2; }
die() {
  echo "lab: error: $*" >&2
  exit 2
}
usage() {
  sed -n '5,7p' "${BASH_SOURCE[0]}" | sed 's/^#   //' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# prepare

pick_kernel() {
  if [ -n "${LAB_KERNEL:-}" ]; then
    [ -r "$LAB_KERNEL" ] || die "LAB_KERNEL=$LAB_KERNEL is not readable"
    KERNEL="$LAB_KERNEL"
    KVER="${LAB_KVER:-$(basename "$LAB_KERNEL" | sed 's/^vmlinuz-//')}"
  else
    KERNEL=""
    local k v
    # Newest /boot/vmlinuz-* that has rdma_rxe in its module tree.
    while read -r k; do
      v="${k#/boot/vmlinuz-}"
      if [ -n "$(find "/lib/modules/$v/kernel/drivers/infiniband/sw/rxe" -name 'rdma_rxe.ko*' 2>/dev/null)" ]; then
        KERNEL="$k" KVER="$v"
      fi
    done < <(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V)
    [ -n "$KERNEL" ] || die "no /boot/vmlinuz-* with rdma_rxe modules; run tools/lab/deps.sh (linux-image-amd64)"
  fi
  [ -r "$KERNEL" ] || die "$KERNEL is not readable (run as root or make it readable)"
  [ -d "/lib/modules/$KVER" ] || die "/lib/modules/$KVER missing for $KERNEL"
}

# Ordered, de-duplicated module files (absolute paths) for MODULES.
module_closure() {
  local m
  for m in "${MODULES[@]}"; do
    modprobe -S "$KVER" --show-depends "$m" || die "modprobe --show-depends $m failed for $KVER"
  done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
}

prepare() {
  local work="$1"
  mkdir -p "$work"
  work="$(cd "$work" && pwd)"
  WORK="$work"
  command -v busybox >/dev/null || die "busybox missing (tools/lab/deps.sh)"
  command -v modprobe >/dev/null || die "modprobe missing (tools/lab/deps.sh)"
  local bb
  bb="$(command -v busybox)"
  file_is_static "$bb" || die "$bb is not static (install busybox-static)"
  pick_kernel
  local mods key
  mods="$(module_closure)"
  key="$(
    {
      echo "v$PREPARE_VERSION $KERNEL $KVER pvh=${LAB_NO_PVH:-yes}"
      stat -c '%n %s %Y' "$KERNEL" "$bb"
      # shellcheck disable=SC2086
      stat -c '%n %s %Y' $mods
      cat "$LAB_DIR/init.sh"
    } | sha256sum | cut -d' ' -f1
  )"
  exec 9>"$work/.prepare.lock"
  flock 9
  if [ -f "$work/initramfs.cpio" ] && [ -r "$(cat "$work/boot-kernel" 2>/dev/null)" ] && [ "$(cat "$work/prepare.key" 2>/dev/null)" = "$key" ]; then
    exec 9>&-
    return 0
  fi
  say "preparing initramfs for $KVER in $work"
  local tmp
  tmp="$(mktemp -d "$work/.initramfs.XXXXXX")"
  mkdir -p "$tmp/root/bin" "$tmp/root/mods" "$tmp/root/dev" "$tmp/root/proc" "$tmp/root/sys"
  cp "$bb" "$tmp/root/bin/busybox"
  ln -s busybox "$tmp/root/bin/sh"
  # The kernel's on-demand module loads run /sbin/modprobe in the initramfs root: hand them to the
  # host's modprobe inside the chroot, so any module of /lib/modules/$KVER can still be loaded.
  mkdir -p "$tmp/root/sbin"
  printf '#!/bin/sh\n[ -x /newroot/sbin/modprobe ] || exit 1\nexec /bin/busybox chroot /newroot /sbin/modprobe "$@"\n' >"$tmp/root/sbin/modprobe"
  chmod 0755 "$tmp/root/sbin/modprobe"
  install -m 0755 "$LAB_DIR/init.sh" "$tmp/root/init"
  local f n
  : >"$tmp/root/mods/order"
  for f in $mods; do
    n="$(basename "$f")"
    case "$n" in
      *.ko) cp "$f" "$tmp/root/mods/$n" ;;
      *.ko.xz) xz -dc "$f" >"$tmp/root/mods/${n%.xz}" ; n="${n%.xz}" ;;
      *.ko.zst) zstd -qdc "$f" >"$tmp/root/mods/${n%.zst}" ; n="${n%.zst}" ;;
      *.ko.gz) gzip -dc "$f" >"$tmp/root/mods/${n%.gz}" ; n="${n%.gz}" ;;
      *) die "unexpected module file $f" ;;
    esac
    echo "$n" >>"$tmp/root/mods/order"
  done
  (cd "$tmp/root" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) >"$tmp/initramfs.cpio"
  mv -f "$tmp/initramfs.cpio" "$work/initramfs.cpio"
  # Boot the uncompressed ELF through its PVH entry when possible: decompressing the xz bzImage
  # under TCG costs ~3 s per guest. Falls back to the bzImage (LAB_NO_PVH=1 forces that).
  local boot="$KERNEL"
  rm -f "$work/vmlinux"
  if [ -z "${LAB_NO_PVH:-}" ] && extract_vmlinux "$KERNEL" "$tmp/vmlinux"; then
    mv -f "$tmp/vmlinux" "$work/vmlinux"
    boot="$work/vmlinux"
  fi
  echo "$boot" >"$work/boot-kernel"
  echo "$KERNEL" >"$work/kernel"
  echo "$KVER" >"$work/kver"
  echo "$key" >"$work/prepare.key"
  rm -rf "$tmp"
  exec 9>&-
  say "initramfs ready: $work/initramfs.cpio ($(du -k "$work/initramfs.cpio" | cut -f1) KiB, $(wc -l <<<"$mods") modules), kernel $KERNEL, booting $boot"
}

# extract_vmlinux BZIMAGE OUT: the ELF kernel inside a compressed bzImage, kept only when it has a
# PVH entry note (Xen ELF note 18, XEN_ELFNOTE_PHYS32_ENTRY) so that qemu can boot it directly.
extract_vmlinux() {
  local img="$1" out="$2" magic tool off
  for magic in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08' 'lz4:\x02\x21\x4c\x18'; do
    tool="${magic%%:*}"
    command -v "$tool" >/dev/null || continue
    for off in $(LC_ALL=C grep -obUaP "${magic#*:}" "$img" 2>/dev/null | cut -d: -f1 | head -n 3); do
      tail -c "+$((off + 1))" "$img" | "$tool" -dc >"$out" 2>/dev/null || true
      if [ "$(head -c 4 "$out" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] &&
        LC_ALL=C readelf -n "$out" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)'; then
        return 0
      fi
    done
  done
  rm -f "$out"
  return 1
}

file_is_static() {
  # busybox-static is a static-pie/static ELF: no PT_INTERP.
  ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

# ---------------------------------------------------------------------------------------------
# run

QEMU_PIDS=()
cleanup() {
  local p
  for p in "${QEMU_PIDS[@]}"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
  done
  for p in "${QEMU_PIDS[@]}"; do
    [ -n "$p" ] || continue
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  QEMU_PIDS=()
  if [ -n "${LINK_DIR:-}" ]; then rm -rf "$LINK_DIR"; fi
}

# start_guest ROLE NETDEV_SPEC EXTRA... ; sets GUEST_PID
start_guest() {
  local role="$1" netdev="$2" mac
  shift 2
  case "$role" in a) mac=52:54:00:99:00:01 ;; b) mac=52:54:00:99:00:02 ;; esac
  # `timeout` bounds the guest even if this script dies without running its trap (SIGKILL).
  # clocksource=hpet: under TCG on a loaded host the TSC calibrates badly and guest time jumped
  # by minutes; the HPET keeps guest time (timeouts, uptimes) in step with the host's.
  timeout -k 10 "$((RUN_TIMEOUT + 60))" "$QEMU" -nodefaults -no-user-config -machine pc -accel tcg -cpu max -m "$MEM" -smp 1 \
    -bios qboot.rom \
    -display none -monitor none -serial "file:$OUT/console-$role.log" -no-reboot \
    -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 clocksource=hpet lab.role=$role $KAPPEND" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$OUT,mount_tag=lab,security_model=none,multidevs=remap" \
    -netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$mac" \
    "$@" </dev/null >"$OUT/.lab/qemu-$role.log" 2>&1 &
  GUEST_PID=$!
  QEMU_PIDS+=("$GUEST_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

tail_file() {
  local title="$1" file="$2" n="${3:-25}"
  echo "----- $title (last $n lines of $file) -----" >&2
  if [ -s "$file" ]; then tail -n "$n" "$file" >&2; else echo "(empty or missing)" >&2; fi
}

# Field of .lab/<role>.started: "setup", "script" or "end" → guest uptime in seconds.
stamp() { awk -v k="$2" '$1 == k { print $2 }' "$OUT/.lab/$1.started" 2>/dev/null || true; }

since() { if [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; else echo "?"; fi; }

# Guest uptime when /init started, as printed on the console.
init_uptime() { sed -n 's/.*lab-init: role=[ab] up=\([0-9.]*\)s.*/\1/p' "$OUT/console-$1.log" 2>/dev/null | head -n1; }

run() {
  local timeout=300 capture="" script_a script_b extra_env=()
  OUT="" MEM=1536
  while [ $# -gt 0 ]; do
    case "$1" in
      --timeout) timeout="${2:?--timeout needs a value}"; shift 2 ;;
      --out) OUT="${2:?--out needs a value}"; shift 2 ;;
      --capture) capture="${2:?--capture needs a value}"; shift 2 ;;
      --mem) MEM="${2:?--mem needs a value}"; shift 2 ;;
      --work) WORK="${2:?--work needs a value}"; shift 2 ;;
      --env)
        [[ "${2:-}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env needs NAME=VALUE"
        extra_env+=("$2")
        shift 2
        ;;
      -h | --help) usage ;;
      --) shift; break ;;
      -*) die "unknown option $1" ;;
      *) break ;;
    esac
  done
  [ $# -eq 2 ] || usage
  script_a="$1" script_b="$2"
  if [ ! -f "$script_a" ] || [ ! -r "$script_a" ]; then die "SCRIPT_A '$script_a' is not a readable file"; fi
  if [ ! -f "$script_b" ] || [ ! -r "$script_b" ]; then die "SCRIPT_B '$script_b' is not a readable file"; fi
  [[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"
  [[ "$MEM" =~ ^[0-9]+$ ]] || die "--mem must be an integer (MiB)"
  RUN_TIMEOUT="$timeout"
  QEMU="$(command -v qemu-system-x86_64)" || die "qemu-system-x86_64 missing (tools/lab/deps.sh)"
  command -v ss >/dev/null || die "ss missing (iproute2)"

  prepare "$WORK"
  KERNEL="$(cat "$WORK/boot-kernel")"
  KAPPEND="${LAB_KERNEL_APPEND:-}"

  if [ -z "$OUT" ]; then
    mkdir -p "$WORK/runs"
    OUT="$(mktemp -d "$WORK/runs/$(date +%Y%m%d-%H%M%S)-XXXX")"
  fi
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  case "$OUT" in
    /run | /run/* | /dev | /dev/* | /proc/* | /sys/*)
      die "the output dir $OUT is under /run, /dev, /proc or /sys, which the guests replace with their own (set --out or LAB_WORK elsewhere)" ;;
  esac
  rm -rf "$OUT/.lab" "$OUT/sync" "$OUT/a" "$OUT/b"
  rm -f "$OUT"/a.out "$OUT"/b.out "$OUT"/a.rc "$OUT"/b.rc "$OUT"/console-a.log "$OUT"/console-b.log "$OUT"/wire.pcap "$OUT"/timing.txt
  mkdir -p "$OUT/.lab" "$OUT/sync" "$OUT/a" "$OUT/b"
  cp "$LAB_DIR/guest-run.sh" "$LAB_DIR/guest-lib.sh" "$OUT/.lab/"
  cp "$script_a" "$OUT/.lab/script-a.sh"
  cp "$script_b" "$OUT/.lab/script-b.sh"
  realpath "$script_a" >"$OUT/.lab/script-a.path"
  realpath "$script_b" >"$OUT/.lab/script-b.path"
  {
    printf 'LAB_REPO=%q\n' "$REPO"
    printf 'LAB_TIMEOUT=%q\n' "$timeout"
    printf 'LAB_WAIT_TIMEOUT=%q\n' "${LAB_WAIT_TIMEOUT:-120}"
  } >"$OUT/.lab/config"
  : >"$OUT/.lab/env"
  [ ${#extra_env[@]} -eq 0 ] || printf '%s\0' "${extra_env[@]}" >"$OUT/.lab/env"

  trap cleanup EXIT
  trap 'say "interrupted: stopping the guests"; cleanup; trap - EXIT; exit 2' INT TERM HUP

  local t0 pid_a="" pid_b="" link
  t0="$(date +%s.%N)"
  # The link: a UNIX stream socket between the two qemus. Not qemu's TCP socket backend: Nagle on
  # that host TCP connection held back every second small frame sent in a row (an RC ACK, then
  # the next SEND) until the other end's delayed ACK, adding ~40 ms to each SDP round trip. Not
  # UDP either: its losses under load send rxe into retransmission timeouts. A UNIX socket keeps
  # qemu's backpressure and has no Nagle.
  LINK_DIR="$(mktemp -d /tmp/lablink.XXXXXX)"
  link="$LINK_DIR/link.sock"
  start_guest a "stream,id=n0,server=on,addr.type=unix,addr.path=$link" \
    -object "filter-dump,id=f0,netdev=n0,file=$OUT/wire.pcap"
  pid_a="$GUEST_PID"
  local i
  for i in $(seq 100); do
    [ -S "$link" ] && break
    alive "$pid_a" || break
    sleep 0.05
  done
  if [ ! -S "$link" ]; then
    cat "$OUT/.lab/qemu-a.log" >&2
    die "qemu for guest a did not open the link socket $link"
  fi
  start_guest b "stream,id=n0,server=off,addr.type=unix,addr.path=$link"
  pid_b="$GUEST_PID"
  say "guests started (link $link, out $OUT, timeout ${timeout}s)"

  local ws_a="" ws_b="" deadline now failed_at="" killed_after_peer="" hung="" infra=""
  deadline=$(($(date +%s) + timeout))
  while alive "$pid_a" || alive "$pid_b"; do
    now=$(date +%s)
    if [ "$now" -ge "$deadline" ]; then
      alive "$pid_a" && hung+=" a"
      alive "$pid_b" && hung+=" b"
      break
    fi
    # A guest that powered off without writing its rc: boot/infrastructure failure.
    for r in a b; do
      local p
      [ "$r" = a ] && p="$pid_a" || p="$pid_b"
      if ! alive "$p" && [ ! -s "$OUT/$r.rc" ] && [[ "$infra" != *"$r"* ]]; then
        infra+=" $r"
      fi
    done
    [ -n "$infra" ] && break
    # A script failed while the other guest still runs: give it a grace period, then stop it.
    if { [ -s "$OUT/a.rc" ] && [ "$(cat "$OUT/a.rc")" != 0 ]; } || { [ -s "$OUT/b.rc" ] && [ "$(cat "$OUT/b.rc")" != 0 ]; }; then
      [ -n "$failed_at" ] || failed_at="$now"
      if [ $((now - failed_at)) -ge "${LAB_FAIL_GRACE:-20}" ]; then
        alive "$pid_a" && killed_after_peer+=" a"
        alive "$pid_b" && killed_after_peer+=" b"
        break
      fi
    fi
    # Host wall time at which each script started (guest wrote "script" into .lab/<role>.started).
    [ -n "$ws_a" ] || { grep -qs '^script' "$OUT/.lab/a.started" && ws_a="$(date +%s.%N)"; } || true
    [ -n "$ws_b" ] || { grep -qs '^script' "$OUT/.lab/b.started" && ws_b="$(date +%s.%N)"; } || true
    sleep 0.2
  done
  local t1 stopped=""
  t1="$(date +%s.%N)"
  # A guest that ended without an rc file is an infrastructure failure (qemu refused to start,
  # kernel panic, /init failed, ...); one still running then is stopped as a consequence.
  if [ -z "$hung" ] && [ -z "$killed_after_peer" ]; then
    infra=""
    alive "$pid_a" && stopped+=" a"
    alive "$pid_b" && stopped+=" b"
    for r in a b; do
      [[ "$stopped" == *"$r"* ]] || [ -s "$OUT/$r.rc" ] || infra+=" $r"
    done
  fi
  cleanup
  trap - EXIT INT TERM HUP

  # Timing.
  local r
  {
    for r in a b; do
      echo "$r: guest uptime at init=$(init_uptime "$r")s net-setup=$(stamp "$r" setup)s script-start=$(stamp "$r" script)s script-end=$(stamp "$r" end)s"
    done
    echo "boot-to-script (host wall from qemu start, ±0.2 s): a=$(since "$t0" "$ws_a")s b=$(since "$t0" "$ws_b")s"
    echo "wall: $(since "$t0" "$t1")s from qemu start to both guests off"
  } >"$OUT/timing.txt"

  if [ -n "$capture" ] && [ -f "$OUT/wire.pcap" ]; then
    mkdir -p "$(dirname "$capture")"
    cp -f "$OUT/wire.pcap" "$capture"
  fi

  # Verdict.
  if [ -n "$hung" ] || [ -n "$infra" ]; then
    echo "lab: INFRASTRUCTURE FAILURE" >&2
    for r in $hung; do
      echo "lab: guest $r still running after ${timeout}s: killed" >&2
      tail_file "console of $r" "$OUT/console-$r.log" 30
      tail_file "output of $r" "$OUT/$r.out" 20
    done
    for r in $infra; do
      echo "lab: guest $r powered off without finishing its script (boot or infrastructure failure)" >&2
      tail_file "console of $r" "$OUT/console-$r.log" 40
      tail_file "qemu of $r" "$OUT/.lab/qemu-$r.log" 10
      tail_file "output of $r" "$OUT/$r.out" 20
    done
    for r in $stopped; do
      echo "lab: guest $r stopped because of the failure above" >&2
    done
    echo "lab: results in $OUT" >&2
    exit 2
  fi
  local rc_a rc_b
  rc_a="$(cat "$OUT/a.rc" 2>/dev/null || echo killed)"
  rc_b="$(cat "$OUT/b.rc" 2>/dev/null || echo killed)"
  [ -s "$OUT/a.rc" ] || echo "killed" >"$OUT/a.rc"
  [ -s "$OUT/b.rc" ] || echo "killed" >"$OUT/b.rc"
  say "a: rc=$rc_a, b: rc=$rc_b; boot-to-script a=$(since "$t0" "$ws_a")s b=$(since "$t0" "$ws_b")s; total $(since "$t0" "$t1")s"
  if [ "$rc_a" = 0 ] && [ "$rc_b" = 0 ]; then
    say "PASS (results in $OUT)"
    exit 0
  fi
  for r in $killed_after_peer; do
    echo "lab: guest $r was still running ${LAB_FAIL_GRACE:-20}s after the other script failed: killed" >&2
  done
  tail_file "a.out (rc=$rc_a)" "$OUT/a.out" 30
  tail_file "b.out (rc=$rc_b)" "$OUT/b.out" 30
  say "FAIL (results in $OUT)"
  exit 1
}

# ---------------------------------------------------------------------------------------------

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  WORK="${LAB_WORK:-$REPO/build/lab}"
  case "$cmd" in
    prepare)
      while [ $# -gt 0 ]; do
        case "$1" in
          --work) WORK="${2:?--work needs a value}"; shift 2 ;;
          *) usage ;;
        esac
      done
      prepare "$WORK"
      say "up to date: $WORK/initramfs.cpio, kernel $(cat "$WORK/kernel") (boots $(cat "$WORK/boot-kernel"))"
      ;;
    run)
      # --work may appear among run's options; run() handles it and exits 0, 1 or 2.
      run "$@"
      ;;
    -h | --help | help | "") usage ;;
    *) die "unknown subcommand '$cmd'" ;;
  esac
}

main "$@"
