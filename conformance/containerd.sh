#!/usr/bin/env bash
# containerd 1.6 (runc v2 shim) driving sbx-oci: a private containerd (root,
# state and sockets in a temp dir, CRI plugin off) and
#   ctr run --runtime io.containerd.runc.v2 --runc-binary $R
# on a busybox OCI image built locally (no registry). Run as root:
#   conformance/containerd.sh [/abs/path/to/sbx-oci]   (default: the debug build, target/<host tuple>/debug/sbx-oci)
# Ends with "N passed, M failed"; exits non-zero if anything failed. Cleans up
# everything it created on exit (daemon, shims, containers, mounts, cgroups,
# the shim's fixed paths under /run/containerd, dirs).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
R=$(realpath -m "${1:-$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/debug/sbx-oci}")
[ -x "$R" ] || { echo "containerd.sh: no runtime binary at $R (cargo build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "containerd.sh: run as root" >&2; exit 2; }

PKGS=(containerd busybox-static util-linux procps)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}" || exit 2
fi

# --- what exists before, so cleanup removes only what this run created ----
had_run_containerd=0; [ -e /run/containerd ] && had_run_containerd=1
declare -A had_cg
for d in /sys/fs/cgroup/*/default; do [ -e "$d" ] && had_cg[$d]=1; done

T=$(mktemp -d /tmp/sbx-containerd.XXXXXX)
SOCK=$T/containerd.sock
mkdir -p "$T/opt"
cat > "$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$T/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/opt"
EOF
C=(ctr -a "$SOCK")
RUN=("${C[@]}" run --runtime io.containerd.runc.v2 --runc-binary "$R")
IMG=localhost/busybox:latest
daemon=""

# Processes whose command line names $T: containerd and its shims.
our_pids() { grep -l -F -- "$T" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3; }

cleanup() {
  set +e
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    for id in $(timeout 10 "${C[@]}" task ls -q 2>/dev/null); do
      timeout 10 "${C[@]}" task kill -a -s SIGKILL "$id" >/dev/null 2>&1
      timeout 20 "${C[@]}" task rm -f "$id" >/dev/null 2>&1
    done
    for id in $(timeout 10 "${C[@]}" container ls -q 2>/dev/null); do
      timeout 20 "${C[@]}" container rm "$id" >/dev/null 2>&1
    done
    kill "$daemon"
    for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon" 2>/dev/null
  fi
  for pid in $(our_pids); do [ "$pid" != $$ ] && kill -9 "$pid" 2>/dev/null; done
  # Container processes still in the cgroups ctr made (/default/<id>).
  for d in /sys/fs/cgroup/*/default; do
    [ -e "$d" ] && [ -z "${had_cg[$d]:-}" ] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
  done
  sleep 0.2
  for d in /sys/fs/cgroup/*/default; do
    [ -e "$d" ] && [ -z "${had_cg[$d]:-}" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # Mounts under $T (snapshots, rootfs) and, if ours, /run/containerd.
  findmnt -rn -o TARGET | grep -F -- "$T" | sort -r | while read -r m; do umount -l "$m"; done
  if [ $had_run_containerd = 0 ] && [ -e /run/containerd ]; then
    findmnt -rn -o TARGET | grep '^/run/containerd' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf /run/containerd
  fi
  rm -rf "$T"
}
trap cleanup EXIT

# --- assertions -------------------------------------------------------------
passed=0 failed=0
OUT="" RC=0
run() { local s=$1; shift; OUT=$(timeout -k 5 "$s" "$@" 2>&1 </dev/null); RC=$?; }
tty_run() { local s=$1; shift
  OUT=$(timeout -k 5 "$s" script -qec "$*" /dev/null 2>&1 </dev/null | tr -d '\r'); RC=${PIPESTATUS[0]}; }
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; [ -n "$OUT" ] && sed 's/^/     | /' <<<"$OUT" | head -20; }
expect() {
  if [ "$RC" != "$2" ]; then fail "$1" "exit status $RC, want $2"
  elif ! grep -q -E -- "$3" <<<"$OUT"; then fail "$1" "output does not match /$3/"
  else pass "$1"; fi
}
# task_field ID COLUMN: PID (2) or STATUS (3) from `ctr task ls`.
task_field() { timeout 10 "${C[@]}" task ls 2>/dev/null | awk -v id="$1" -v c="$2" '$1==id{print $c}'; }
# gone PID: the process has exited (no longer in /proc, or a zombie the shim,
# a subreaper, has not reaped yet).
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
freezer_state() {
  local cg; cg=$(awk -F: '$2=="freezer"{print $3}' "/proc/$(task_field "$1" 2)/cgroup")
  cat "/sys/fs/cgroup/freezer$cg/freezer.state"
}

start=$(date +%s)
setsid containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 </dev/null &
daemon=$!
for _ in $(seq 100); do "${C[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
run 10 "${C[@]}" version
expect "containerd starts on a private socket" 0 'Server:'
[ "$RC" = 0 ] || { tail -20 "$T/containerd.log"; echo "0 passed, 1 failed"; exit 1; }

# --- the image: an OCI archive of the busybox rootfs, built here -------------
oci=$T/oci
"$REPO/bundles/busybox.sh" "$T/bb" >/dev/null || exit 2
mkdir -p "$oci/blobs/sha256"
blob() { # blob FILE -> moves FILE into blobs, prints "digest size"
  local d s; d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
  mv "$1" "$oci/blobs/sha256/$d"; echo "sha256:$d $s"
}
tar -C "$T/bb/rootfs" -cf "$T/layer.tar" . || exit 2
read -r layer layer_size < <(blob "$T/layer.tar")
case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$arch" "$layer" > "$T/config.json"
read -r config config_size < <(blob "$T/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" > "$T/manifest.json"
read -r manifest manifest_size < <(blob "$T/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$manifest_size" "$IMG" > "$oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
tar -C "$oci" -cf "$T/busybox-oci.tar" . || exit 2
run 60 "${C[@]}" image import "$T/busybox-oci.tar"
run 10 "${C[@]}" image ls -q
expect "ctr image import of the busybox OCI archive" 0 "^$IMG\$"

# --- run --rm -----------------------------------------------------------------
run 60 "${RUN[@]}" --rm "$IMG" t1 echo hello from busybox
expect "run --rm: output" 0 '^hello from busybox$'
run 60 "${RUN[@]}" --rm "$IMG" t2 sh -c 'exit 3'
expect "run --rm: exit status 3" 3 '^$'
tty_run 60 "${RUN[*]} --rm -t $IMG t3 sh -c 'tty; test -t 0 && test -t 1 && echo both-ttys'"
expect "run -t: tty through the console socket" 0 '^/dev/pts/[0-9]+
both-ttys$'

# --- a detached task: exec, ps, pause/resume, kill, rm -------------------------
run 60 "${RUN[@]}" -d "$IMG" d1 \
  sh -c 'trap "echo got-usr1 > /tmp/usr1" USR1; trap "exit 7" TERM; while :; do sleep 0.2; done'
pid=$(task_field d1 2)
if [ "$RC" = 0 ] && [ "$(task_field d1 3)" = RUNNING ] && kill -0 "${pid:-0}" 2>/dev/null; then
  pass "run -d: task RUNNING (pid $pid)"
else fail "run -d" "rc $RC, status $(task_field d1 3)"; fi
run 30 "${C[@]}" task exec --exec-id e1 d1 sh -c 'echo exec says $((6*7))'
expect "task exec: output" 0 '^exec says 42$'
run 30 "${C[@]}" task exec --exec-id e2 d1 sh -c 'exit 5'
expect "task exec: exit status 5" 5 '^$'
tty_run 30 "${C[*]} task exec -t --exec-id e3 d1 tty"
# ctr's own terminal sometimes echoes a NUL first ("^@"); runc shows it too.
expect "task exec -t: a pty through the console socket" 0 '^(\^@)*/dev/pts/[0-9]+$'
run 30 "${C[@]}" task ps d1
expect "task ps lists the init process" 0 "^$pid[[:space:]]"
run 30 "${C[@]}" task pause d1
if [ "$RC" = 0 ] && [ "$(task_field d1 3)" = PAUSED ] && [ "$(freezer_state d1)" = FROZEN ]; then
  pass "task pause: PAUSED and FROZEN"
else fail "task pause" "status $(task_field d1 3), freezer $(freezer_state d1)"; fi
run 30 "${C[@]}" task resume d1
if [ "$RC" = 0 ] && [ "$(task_field d1 3)" = RUNNING ] && [ "$(freezer_state d1)" = THAWED ]; then
  pass "task resume: RUNNING and THAWED"
else fail "task resume" "status $(task_field d1 3), freezer $(freezer_state d1)"; fi
run 30 "${C[@]}" task kill -s SIGUSR1 d1
got=""
for _ in $(seq 50); do
  got=$(timeout 10 "${C[@]}" task exec --exec-id "u$RANDOM" d1 cat /tmp/usr1 2>/dev/null) && break
  sleep 0.1
done
if [ "$RC" = 0 ] && [ "$got" = got-usr1 ] && [ "$(task_field d1 3)" = RUNNING ]; then
  pass "task kill -s SIGUSR1: the container's trap ran, still running"
else fail "task kill -s SIGUSR1" "rc $RC, trap wrote '$got'"; fi
run 30 "${C[@]}" task rm d1
expect "task rm refuses a running task" 1 'running'
run 30 "${C[@]}" task kill d1
for _ in $(seq 50); do [ "$(task_field d1 3)" = STOPPED ] && break; sleep 0.1; done
kill_rc=$RC
if [ "$kill_rc" = 0 ] && [ "$(task_field d1 3)" = STOPPED ]; then
  pass "task kill: TERM reaches the trap, task STOPPED"
else fail "task kill (TERM)" "kill rc $kill_rc, status $(task_field d1 3)"; fi
run 30 "${C[@]}" task rm d1   # warns of the task's status: the trap's 7
if [ "$RC" = 0 ] && grep -q 'non-zero exit code 7' <<<"$OUT" && [ -z "$(task_field d1 3)" ] && [ ! -e /run/containerd/runc/default/d1 ]; then
  pass "task rm: exit status 7 reported, task and runtime state gone"
else fail "task rm" "rc $RC"; fi
run 30 "${C[@]}" container rm d1

# --- kill --all: a task in this shell's (the host's) pid namespace ---------------
# (/proc/1/ns/pid cannot be opened on this VM, for runc either.)
m1=$((RANDOM + 40000)) m2=$((RANDOM + 40000))
run 60 "${RUN[@]}" -d --with-ns pid:/proc/$$/ns/pid "$IMG" k1 \
  sh -c "trap '' TERM; sleep $m1 & sleep $m2 & wait"
expect "run -d in the host's pid namespace" 0 '^$'
p1="" p2=""
for _ in $(seq 50); do
  p1=$(pgrep -x -f "sleep $m1") && p2=$(pgrep -x -f "sleep $m2") && break; sleep 0.1
done
run 30 "${C[@]}" task kill -a -s SIGKILL k1
for _ in $(seq 50); do
  [ "$(task_field k1 3)" = STOPPED ] && gone "$p1" && gone "$p2" && break; sleep 0.1
done
if [ "$RC" = 0 ] && [ -n "$p1" ] && [ -n "$p2" ] && gone "$p1" && gone "$p2" \
   && [ "$(task_field k1 3)" = STOPPED ]; then
  pass "task kill --all: every process of a host-pid-namespace task killed"
else fail "task kill --all" "rc $RC, pids '$p1' '$p2', status $(task_field k1 3)"; fi
run 30 "${C[@]}" task rm k1
run 30 "${C[@]}" container rm k1
expect "task rm and container rm after kill --all" 0 '^$'

# --- a failed create: the message comes from sbx-oci's --log JSON ---------------
run 60 "${RUN[@]}" --rm "$IMG" f1 /no/such/binary
if [ "$RC" != 0 ] && grep -q -F 'OCI runtime create failed: create container "f1": ' <<<"$OUT" \
   && grep -q -F "executable '/no/such/binary' not found" <<<"$OUT"; then
  pass "failed create: ctr shows sbx-oci's --log message (exit $RC)"
  sed 's/^/     | /' <<<"$OUT"
else fail "failed create" "exit $RC"; fi
"${C[@]}" container rm f1 >/dev/null 2>&1
run 10 "${C[@]}" container ls -q
expect "no container left behind" 0 '^$'

echo "containerd.sh: $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
