#!/usr/bin/env bash
# podman 4.3 driving sbx-oci: every scenario runs `podman --runtime $R` with a
# private containers.conf, storage and tmpdir, on a busybox image built
# locally (no registry). Run as root:
#   conformance/podman.sh [/abs/path/to/sbx-oci]   (default: the debug build, target/<host tuple>/debug/sbx-oci)
# Ends with "N passed, M failed"; exits non-zero if anything failed. Cleans up
# everything it created on exit (containers, mounts, netns, cgroups, nft
# tables, ip_forward, dirs).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
R=$(realpath -m "${1:-$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/debug/sbx-oci}")
[ -x "$R" ] || { echo "podman.sh: no runtime binary at $R (cargo build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "podman.sh: run as root" >&2; exit 2; }

PKGS=(podman conmon catatonit netavark aardvark-dns iptables nftables busybox-static
      util-linux procps iproute2)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}" || exit 2
fi

# --- what exists before, so cleanup removes only what this run created ----
had_netns_dir=0; [ -e /run/netns ] && had_netns_dir=1
had_run_containers=0; [ -e /run/containers ] && had_run_containers=1
had_var_lib_containers=0; [ -e /var/lib/containers ] && had_var_lib_containers=1
declare -A had_cg
for d in /sys/fs/cgroup/*/libpod_parent; do [ -e "$d" ] && had_cg[$d]=1; done
nft_before=$(nft list tables 2>/dev/null)
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
had_podman0=0; ip link show podman0 >/dev/null 2>&1 && had_podman0=1

T=$(mktemp -d /tmp/sbx-podman.XXXXXX)
export CONTAINERS_CONF=$T/containers.conf CONTAINERS_STORAGE_CONF=$T/storage.conf
mkdir -p "$T/networks" "$T/libpod" "$T/vol"
cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/events.log"
runtime = "$R"
[network]
network_config_dir = "$T/networks"
EOF
cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$T/graph"
runroot = "$T/run"
EOF
P=(podman --runtime "$R" --tmpdir "$T/libpod" --volumepath "$T/vol")
IMG=localhost/busybox:latest

# Processes whose command line names $T are this run's (conmon, podman).
our_pids() { grep -l -F -- "$T" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3; }

cleanup() {
  set +e
  timeout 60 "${P[@]}" rm -af -t 0 >/dev/null 2>&1
  timeout 30 "${P[@]}" system prune -af >/dev/null 2>&1
  for pid in $(our_pids); do [ "$pid" != $$ ] && kill -9 "$pid" 2>/dev/null; done
  # Mounts under $T (overlay layers, shm), deepest first.
  findmnt -rn -o TARGET | grep -F -- "$T" | sort -r | while read -r m; do umount -l "$m"; done
  # podman made /run/netns (a shared self-bind mount) if it was missing; undo
  # that only once it is empty (podman removes its netns files on rm).
  if [ $had_netns_dir = 0 ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
    while findmnt -rn /run/netns >/dev/null; do umount -l /run/netns || break; done
    rmdir /run/netns
  fi
  [ $had_run_containers = 0 ] && rm -rf /run/containers
  [ $had_var_lib_containers = 0 ] && rm -rf /var/lib/containers
  for d in /sys/fs/cgroup/*/libpod_parent; do
    [ -e "$d" ] && [ -z "${had_cg[$d]:-}" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  [ $had_podman0 = 0 ] && ip link del podman0 2>/dev/null
  # nft tables netavark's iptables calls created: drop them only if every
  # chain in them is a base chain or netavark's.
  while read -r _ fam name; do
    [ -n "$name" ] || continue
    grep -qx "table $fam $name" <<<"$nft_before" && continue
    chains=$(nft list table "$fam" "$name" 2>/dev/null | awk '$1=="chain"{print $2}')
    if ! grep -v -x -E 'NETAVARK[-_A-Za-z0-9]*|INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING' \
        <<<"$chains" | grep -q .; then
      nft delete table "$fam" "$name"
    fi
  done < <(nft list tables 2>/dev/null)
  echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
  rm -rf "$T"
}
trap cleanup EXIT

# --- assertions -------------------------------------------------------------
passed=0 failed=0
OUT="" RC=0
# run SECS CMD...: runs CMD bounded by SECS; stdout+stderr in $OUT, status in $RC.
run() { local s=$1; shift; OUT=$(timeout -k 5 "$s" "$@" 2>&1 </dev/null); RC=$?; }
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; [ -n "$OUT" ] && sed 's/^/     | /' <<<"$OUT" | head -20; }
# expect NAME RC REGEX: checks the last run's status and output (ERE). A
# one-line REGEX must match some line; one with newlines, the whole output
# (grep would take each of its lines as a pattern of its own, any one enough).
expect() {
  local ok=1
  if [[ $3 == *$'\n'* ]]; then [[ $OUT =~ $3 ]] || ok=0
  else grep -q -E -- "$3" <<<"$OUT" || ok=0; fi
  if [ "$RC" != "$2" ]; then fail "$1" "exit status $RC, want $2"
  elif [ $ok = 0 ]; then fail "$1" "output does not match /$3/"
  else pass "$1"; fi
}
# tty CMD: runs CMD on a pseudo-terminal (script(1)); output without \r.
tty_run() { local s=$1; shift
  OUT=$(timeout -k 5 "$s" script -qec "$*" /dev/null 2>&1 </dev/null | tr -d '\r'); RC=${PIPESTATUS[0]}; }
inspect() { timeout 20 "${P[@]}" inspect -f "$2" "$1" 2>/dev/null; }
# gone PID: exited (no longer in /proc, or a zombie not yet reaped).
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
freezer_state() {
  local pid cg; pid=$(inspect "$1" '{{.State.Pid}}')
  cg=$(awk -F: '$2=="freezer"{print $3}' "/proc/$pid/cgroup")
  cat "/sys/fs/cgroup/freezer$cg/freezer.state"
}

# --- the image --------------------------------------------------------------
start=$(date +%s)
"$REPO/bundles/busybox.sh" "$T/bb" >/dev/null || exit 2
tar -C "$T/bb/rootfs" -cf "$T/rootfs.tar" . || exit 2
run 120 "${P[@]}" import "$T/rootfs.tar" "$IMG"
expect "podman import of the busybox image" 0 '.'
[ "$RC" = 0 ] || { echo "0 passed, 1 failed"; exit 1; }
run 30 "${P[@]}" info --format '{{.Host.OCIRuntime.Path}}'
expect "podman info names sbx-oci as the runtime" 0 "^$R\$"

# --- run --rm ---------------------------------------------------------------
run 60 "${P[@]}" run --rm --network none "$IMG" echo hello from busybox
expect "run --rm: output" 0 '^hello from busybox$'
run 60 "${P[@]}" run --rm --network none "$IMG" sh -c 'exit 3'
expect "run --rm: exit status 3" 3 '^$'
run 60 "${P[@]}" run --rm --network none "$IMG" false
expect "run --rm: exit status 1" 1 '^$'

# --- a detached container: exec, ps, top, pause, kill, update, rm -f --------
run 60 "${P[@]}" run -d --name c1 --network none "$IMG" \
  sh -c 'trap "echo got-usr1 > /tmp/usr1" USR1; while :; do sleep 0.2; done'
expect "run -d" 0 '^[0-9a-f]{64}$'
run 30 "${P[@]}" exec c1 sh -c 'echo exec says $((6*7))'
expect "exec: output" 0 '^exec says 42$'
run 30 "${P[@]}" exec c1 sh -c 'exit 5'
expect "exec: exit status 5" 5 '^$'
run 30 "${P[@]}" exec c1 tty
expect "exec without -t has no terminal" 1 'not a tty'
tty_run 30 "${P[*]} exec -t c1 tty"
expect "exec -t: a pty through the console socket" 0 '^/dev/pts/[0-9]+$'
run 30 "${P[@]}" ps --format '{{.Names}} {{.Status}}'
expect "ps lists c1 as Up" 0 '^c1 Up'
run 30 "${P[@]}" top c1 pid args
expect "top shows the container's processes" 0 'while :'
run 30 "${P[@]}" pause c1
if [ "$RC" = 0 ] && [ "$(inspect c1 '{{.State.Status}}')" = paused ] \
   && [ "$(freezer_state c1)" = FROZEN ]; then pass "pause: paused and FROZEN"
else fail "pause" "status $(inspect c1 '{{.State.Status}}'), freezer $(freezer_state c1)"; fi
run 30 "${P[@]}" unpause c1
if [ "$RC" = 0 ] && [ "$(inspect c1 '{{.State.Status}}')" = running ] \
   && [ "$(freezer_state c1)" = THAWED ]; then pass "unpause: running and THAWED"
else fail "unpause" "status $(inspect c1 '{{.State.Status}}'), freezer $(freezer_state c1)"; fi
run 30 "${P[@]}" kill -s USR1 c1
got=""
for _ in $(seq 50); do
  got=$(timeout 10 "${P[@]}" exec c1 cat /tmp/usr1 2>/dev/null) && break; sleep 0.1
done
if [ "$RC" = 0 ] && [ "$got" = got-usr1 ] && [ "$(inspect c1 '{{.State.Status}}')" = running ]; then
  pass "kill -s USR1: the container's trap ran, still running"
else fail "kill -s USR1" "rc $RC, trap wrote '$got'"; fi
run 30 "${P[@]}" update --cpu-shares 512 --memory 64m c1
expect "update --cpu-shares --memory" 0 '.'
run 30 "${P[@]}" exec c1 cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes
expect "update: read back in the container from /sys/fs/cgroup" 0 '^512
67108864$'
cid=$(inspect c1 '{{.Id}}')
run 30 "${P[@]}" rm -f c1
if [ "$RC" = 0 ] && ! timeout 20 "${P[@]}" container exists c1 && [ ! -e "/run/sbx-oci/$cid" ]; then
  pass "rm -f: container and runtime state gone"
else fail "rm -f" "rc $RC"; fi

# --- stop: TERM, then KILL after -t 1 ----------------------------------------
run 60 "${P[@]}" run -d --name c2 --network none "$IMG" \
  sh -c 'trap "exit 7" TERM; while :; do sleep 0.2; done'
run 30 "${P[@]}" stop -t 10 c2
if [ "$RC" = 0 ] && [ "$(inspect c2 '{{.State.ExitCode}}')" = 7 ]; then
  pass "stop: TERM reaches the container's trap (exit 7)"
else fail "stop (TERM)" "rc $RC, exit code $(inspect c2 '{{.State.ExitCode}}')"; fi
run 60 "${P[@]}" run -d --name c3 --network none "$IMG" \
  sh -c 'trap "" TERM; while :; do sleep 0.2; done'
t0=$(date +%s%N)
run 30 "${P[@]}" stop -t 1 c3
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ "$RC" = 0 ] && [ "$(inspect c3 '{{.State.ExitCode}}')" = 137 ] && [ "$ms" -ge 1000 ]; then
  pass "stop -t 1: TERM ignored, KILL after 1 s (exit 137, ${ms} ms)"
else fail "stop -t 1 (KILL)" "rc $RC, exit code $(inspect c3 '{{.State.ExitCode}}'), ${ms} ms"; fi
run 30 "${P[@]}" rm c2 c3
expect "rm of stopped containers" 0 'c2'

# --- run -t: the console socket -----------------------------------------------
tty_run 60 "${P[*]} run --rm -t --network none $IMG sh -c 'tty; test -t 0 && test -t 1 && echo both-ttys'"
expect "run -t: tty through the console socket" 0 '^/dev/pts/[0-9]+
both-ttys$'

# --- networks ----------------------------------------------------------------
run 60 "${P[@]}" run --rm --network none "$IMG" sh -c 'ls /sys/class/net'
expect "--network none: only lo" 0 '^lo$'
# The default netavark bridge: the container gets an address (nothing is sent).
run 60 "${P[@]}" run --rm "$IMG" ip -4 -o addr show eth0
expect "default bridge: eth0 has an address" 0 'inet 10\.88\.[0-9]+\.[0-9]+/16'

# --- --pid host: kill, and stop's kill --all ------------------------------------
# podman kill sends the signal to the init process; podman stop of a container
# without its own pid namespace calls `kill --all ID 15`, which must reach
# every process in the container's cgroup.
m1=$((RANDOM + 40000)) m2=$((RANDOM + 40000))
run 60 "${P[@]}" run -d --name h1 --pid host --network none "$IMG" sh -c "sleep $m1"
p1=""
for _ in $(seq 50); do p1=$(pgrep -x -f "sleep $m1") && break; sleep 0.1; done
run 30 "${P[@]}" kill h1
for _ in $(seq 150); do gone "$p1" && break; sleep 0.1; done
if [ "$RC" = 0 ] && [ -n "$p1" ] && gone "$p1" && [ "$(inspect h1 '{{.State.Status}}')" = exited ]; then
  pass "--pid host: podman kill"
else fail "--pid host: podman kill" "rc $RC, host pid '$p1', status $(inspect h1 '{{.State.Status}}')"; fi
run 60 "${P[@]}" run -d --name h2 --pid host --network none "$IMG" \
  sh -c "trap : TERM; sleep $m1 & sleep $m2 & wait; wait; echo done"
p1="" p2=""
for _ in $(seq 50); do
  p1=$(pgrep -x -f "sleep $m1") && p2=$(pgrep -x -f "sleep $m2") && break; sleep 0.1
done
run 30 "${P[@]}" stop -t 10 h2
for _ in $(seq 150); do gone "$p1" && gone "$p2" && break; sleep 0.1; done
code=$(inspect h2 '{{.State.ExitCode}}')
if [ "$RC" = 0 ] && [ -n "$p1" ] && [ -n "$p2" ] && gone "$p1" && gone "$p2" && [ "$code" = 0 ]; then
  pass "--pid host: stop's kill --all TERMs every process (init exits 0, no KILL)"
else fail "--pid host: stop (kill --all)" "rc $RC, pids '$p1' '$p2', exit code $code"; fi
run 30 "${P[@]}" rm -f h1 h2

# --- --read-only ---------------------------------------------------------------
run 60 "${P[@]}" run --rm --read-only --network none "$IMG" sh -c 'touch /x'
expect "--read-only: / is read-only" 1 'Read-only file system'
run 60 "${P[@]}" run --rm --read-only --network none "$IMG" sh -c 'touch /tmp/x /var/tmp/x /run/x && echo writable-tmp'
expect "--read-only: /tmp, /var/tmp, /run are writable tmpfs" 0 '^writable-tmp$'

# --- a command that cannot start ---------------------------------------------
run 60 "${P[@]}" run --rm --network none "$IMG" /no/such/binary
if [ "$RC" != 0 ] && grep -E 'OCI runtime error' <<<"$OUT" | grep -q -F "$R: sbx-oci: " \
   && grep -q '/no/such/binary' <<<"$OUT"; then
  pass "a command that cannot start: podman shows sbx-oci's message (exit $RC)"
  grep 'OCI runtime error' <<<"$OUT" | sed 's/^/     | /'
else fail "a command that cannot start" "exit $RC"; fi
run 30 "${P[@]}" ps -a -q
expect "no container left behind" 0 '^$'

echo "podman.sh: $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
