#!/usr/bin/env bash
# Boots a QEMU guest that looks like a stock Debian 12 host (Debian's 6.1
# kernel, cgroup v2 with every controller, systemd 252 as PID 1) and runs
# the tests in it. The guest's / is this machine's /, read-only over 9p
# under a tmpfs overlay, so the guest runs the test binaries just built here
# with the packages installed here. Results come back on a second serial port
# and end with "N passed, M failed" (non-zero exit on any failure).
#
#   guest/run.sh [--plain] [--keep] [--timeout SECONDS] [--stall SECONDS] [--job FILE]
#     --plain    no systemd: the job runs as the guest's init (cgroup2 mounted by hand)
#     --job      lines "NAME COMMAND..." to run instead of guest/job.default
#     --timeout  for each boot of the guest (default 1200)
#     --stall    a guest silent this long is stalled (default 300): what its
#                vCPUs and kernel were doing is printed (registers, SysRq l
#                and w on its console), and it is booted once more for the
#                jobs it had not finished; the stall is reported either way
#                (a healthy run is never silent for more than ~2 minutes:
#                libtest reports a test running past 60 s)
#   SBX_GUEST_ACCEL=kvm|tcg  (default: kvm when a probe boot under it works, else tcg)
#
# What it needs (installed if missing): qemu-system-x86, busybox-static,
# kmod. The kernel package is downloaded (apt-get download) and unpacked
# under target/guest/, never installed.
set -euo pipefail
# (All in one function, read whole before it runs: an edit of this file
# during a run cannot change what the run does.)
main() {

REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$REPO/target/guest
plain=0 keep=0 limit=1200 stall=300 jobsrc=$REPO/guest/job.default
while [ $# -gt 0 ]; do
  case $1 in
    --plain) plain=1 ;;
    --keep) keep=1 ;;
    --timeout) limit=$2; shift ;;
    --stall) stall=$2; shift ;;
    --job) jobsrc=$(realpath "$2"); shift ;;
    *) echo "guest/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "guest/run.sh: run as root" >&2; exit 2; }

PKGS=(qemu-system-x86 busybox-static kmod)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/dev/null
fi
mkdir -p "$W"
t_start=$(date +%s)

# The kernel: the version Debian 12's linux-image-amd64 points at.
kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -1)
[ -n "$kpkg" ] || { echo "guest/run.sh: no linux-image-6.1 package known to apt (apt-get update?)" >&2; exit 2; }
K=$W/$kpkg
if [ ! -e "$K/done" ]; then
  rm -rf "$K" && mkdir -p "$K/deb"
  # apt's sandbox user cannot write under target/: download as root.
  (cd "$K/deb" && apt-get download -q -o APT::Sandbox::User=root "$kpkg")
  dpkg-deb -x "$K"/deb/*.deb "$K/x"
  kver=$(ls "$K/x/lib/modules")
  depmod -b "$K/x" "$kver"
  rm -rf "$K/deb"
  touch "$K/done"
fi
kver=$(ls "$K/x/lib/modules")
mods=$K/x/lib/modules/$kver

# The initramfs: busybox, guest/init, and the modules 9p and overlayfs need.
I=$W/initramfs
rm -rf "$I" && mkdir -p "$I"/{bin,modules,proc,sys,dev}
cp /bin/busybox "$I/bin/busybox"
cp "$REPO/guest/init" "$I/init"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -d "$K/x" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
  cp "$ko" "$I/modules/"
  basename "$ko"
done > "$I/modules/order"
(cd "$I" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$W/initramfs.gz"

# The job: guest/job.sh reads it from target/guest/job (visible in the
# guest). "@NAME" in a command is the test binary of tests/NAME.rs, "@sbx"
# the runtime (both built here first, as `cargo test` builds them).
(cd "$REPO" && cargo test --no-run --locked --message-format=json 2>/dev/null) > "$W/build.json"
python3 - "$jobsrc" "$W/build.json" > "$W/job.tmp" <<'PY'
import json, re, sys
exes = {}
for line in open(sys.argv[2]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind = m["target"]["kind"]
        if "test" in kind:
            exes[m["target"]["name"]] = m["executable"]
        elif "bin" in kind and m["target"]["name"] == "sbx-oci" and not m["profile"]["test"]:
            exes["sbx"] = m["executable"]
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    def exe(m):
        if m.group(1) not in exes:
            sys.exit(f"guest/run.sh: no test binary {m.group(1)} (tests/{m.group(1)}.rs)")
        return exes[m.group(1)]
    print(re.sub(r"@([A-Za-z0-9_]+)", exe, line))
PY
mv "$W/job.tmp" "$W/job"

accel=${SBX_GUEST_ACCEL:-}
# The guest's machine; the accelerator and the serial ports are added below.
Q=(qemu-system-x86_64 -cpu max -m 4G -smp 2 -display none -no-reboot -nic none
   -monitor "unix:$W/monitor.sock,server=on,wait=off"
   -kernel "$K/x/boot/vmlinuz-$kver" -initrd "$W/initramfs.gz"
   -drive "file=$W/disk.img,format=raw,if=virtio,cache=unsafe"
   -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap)
rm -f "$W/disk.img"
truncate -s 4G "$W/disk.img"  # sparse: job.sh makes a file system on it
# /dev/kvm may be one a stock kernel cannot run under (this machine kind's
# paravirtual KVM): a short probe boot tells, and TCG is used instead.
if [ -z "$accel" ]; then
  accel=tcg
  if [ -w /dev/kvm ]; then
    rm -f "$W/probe.log"
    { timeout 20 "${Q[@]}" -accel kvm -serial "file:$W/probe.log" -append \
      "console=ttyS0 panic=-1 rdinit=/init sbxprobe=1"; } >/dev/null 2>&1 || true
    grep -q 'sbx-guest-init: probe ok' "$W/probe.log" 2>/dev/null && accel=kvm
  fi
fi
[ "$accel" = tcg ] && accel=tcg,thread=multi

init_args="systemd.unit=sbx-guest.target"
[ $plain = 1 ] && init_args="sbxinit=plain"
echo "guest: kernel $kver, accel ${accel%%,*}, $([ $plain = 1 ] && echo 'no systemd' || echo 'systemd as init'), job $(wc -l < "$W/job") lines"

# One boot: runs target/guest/job, the guest's results in $W/results.$1.log.
# A watcher stops a guest silent for $stall seconds, after asking QEMU's
# monitor for each vCPU's registers and the guest kernel for SysRq l (every
# CPU's backtrace) and w (blocked tasks), which land on its console.
boot() {
  local n=$1 res=$W/results.$1.log
  rm -f "$W/console.log" "$res" "$W/stalled" "$W/monitor.sock"
  touch "$res"
  # The guest's lines as they come, marked (so that a summary over this
  # script's output counts only its last line, not cargo's lines inside).
  tail -n +1 -f "$res" > >(sed -u 's/\r$//; s/^/guest| /') &
  tailer=$!
  (
    last=-1 quiet=0
    while sleep 10; do
      size=$(stat -c %s "$res" 2>/dev/null || echo 0)
      if [ "$size" = "$last" ]; then quiet=$((quiet + 10)); else quiet=0 last=$size; fi
      [ $quiet -ge "$stall" ] || continue
      echo "$quiet" > "$W/stalled"
      python3 - "$W/monitor.sock" > "$W/stall.log" 2>&1 <<'PY' || true
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(2)
def cmd(c, wait=1.0):
    s.sendall(c.encode() + b"\n")
    time.sleep(wait)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    print(out.decode(errors="replace").replace("\r", ""))
cmd("info registers -a")
cmd("sendkey alt-sysrq-l", 5)
cmd("sendkey alt-sysrq-w", 5)
cmd("quit")
PY
      break
    done
  ) &
  watcher=$!
  local rc=0
  timeout -k 10 "$limit" "${Q[@]}" -accel "$accel" -serial "file:$W/console.log" -serial "file:$res" -append \
    "console=ttyS0 panic=-1 rdinit=/init quiet sysrq_always_enabled systemd.show_status=0 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all $init_args sbxrepo=$REPO sbxmods=$mods" \
    || rc=$?
  sleep 0.5
  kill $tailer $watcher 2>/dev/null || true
  wait $watcher 2>/dev/null || true
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "guest: timed out after $limit s"
  fi
}

tailer='' watcher=''
trap 'kill $tailer $watcher 2>/dev/null || true' EXIT
boot 1
R=$(tr -d '\r' < "$W/results.1.log")
if [ -e "$W/stalled" ]; then
  job=$(sed -n 's/^sbx-guest: == \([^ ]*\)$/\1/p' <<<"$R" | tail -1)
  echo "guest: STALLED: no output for $(cat "$W/stalled") s during job ${job:-?}; QEMU's registers and the guest's SysRq l/w:"
  grep -E '^(CPU#|RIP=|RSP=|CS |CR0=)' "$W/stall.log" | sed 's/^/     | /'
  tr -d '\r' < "$W/console.log" | tail -120 | sed 's/^/     | /'
  # Once more for the jobs not finished (the stalled one included): what
  # the stalled one printed is not counted.
  done_jobs=$(sed -n 's/^sbx-guest: == \([^ ]*\): exit .*/\1/p' <<<"$R")
  cp "$W/job" "$W/job.all"
  awk 'NR == FNR { done[$1] = 1; next } !($1 in done)' <(echo "$done_jobs") "$W/job.all" > "$W/job"
  R=$(awk -v j="${job:-}" '$0 == "sbx-guest: == " j { exit } { print }' <<<"$R")
  echo "guest: booting again for $(wc -l < "$W/job") jobs"
  boot 2
  R="$R
$(tr -d '\r' < "$W/results.2.log")"
  cp "$W/job.all" "$W/job"
  stalls=1
else
  stalls=0
fi
if ! grep -q '^sbx-guest: done' <<<"$R"; then
  echo "guest: the job did not finish; the end of the guest's console:"
  tr -d '\r' < "$W/console.log" | tail -40 | sed 's/^/     | /'
fi
# Counts: cargo's test results, the job's own ok/FAIL lines, and one failure
# per job line that exited non-zero without a test summary of its own.
echo "$R" | awk '
  /^test result:/ { p += $4; f += $6 }
  /^ok   / { p++ } /^FAIL / { f++ }
  /^sbx-guest: == .*: exit [0-9]+ in/ { if ($(NF-3) != 0 && !summ) f++; summ = 0; next }
  /^test result:/ || /^[0-9]+ passed, [0-9]+ failed$/ { summ = 1 }
  END { printf "guest: %d passed, %d failed\n", p, f > "/dev/stderr" }' 2>"$W/counts"
passed=$(awk '{print $2}' "$W/counts") failed=$(awk '{print $4}' "$W/counts")
grep -q '^sbx-guest: done' <<<"$R" || failed=$((failed + 1))
[ $keep = 1 ] || rm -rf "$I" "$W/disk.img"
echo "guest.sh: $(( $(date +%s) - t_start )) s$([ $stalls = 0 ] || echo ", after a stall (above)")"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
}
main "$@"
