#!/usr/bin/env bash
# podman 4.3 driving sbx-oci: every scenario runs `podman --runtime $R` with a
# private containers.conf, storage and tmpdir, on a busybox image built
# locally (no registry). Run as root:
#   conformance/podman.sh [/abs/path/to/sbx-oci]   (default: the debug build, target/<host tuple>/debug/sbx-oci)
# Ends with "N passed, M failed"; exits non-zero if anything failed. Cleans up
# everything it created on exit (containers, mounts, netns and veth pairs,
# the test host's server, cgroups, nft tables, ip_forward, dirs).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
R=$(realpath -m "${1:-$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/debug/sbx-oci}")
[ -x "$R" ] || { echo "podman.sh: no runtime binary at $R (cargo build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "podman.sh: run as root" >&2; exit 2; }

# python3: the egress scenarios' test host serves TCP and UDP from it.
PKGS=(podman conmon catatonit netavark aardvark-dns iptables nftables busybox-static
      util-linux procps iproute2 python3)
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

# The egress scenarios' test network (made in their section): netns NA for
# the containers and NB, the test host, joined by a veth pair; host_veth joins
# the host to NB for the default-bridge scenario.
NA=sbxpod$$a NB=sbxpod$$b
server_pid="" host_veth=""
net_cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  [ -n "$host_veth" ] && ip link del "$host_veth" 2>/dev/null
  # Deleting a namespace deletes its ends of the veth pairs, so the pairs.
  ip netns del "$NA" 2>/dev/null
  ip netns del "$NB" 2>/dev/null
}

# Processes whose command line names $T are this run's (conmon, podman).
our_pids() { grep -l -F -- "$T" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3; }

cleanup() {
  set +e
  timeout 60 "${P[@]}" rm -af -t 0 >/dev/null 2>&1
  timeout 30 "${P[@]}" system prune -af >/dev/null 2>&1
  for pid in $(our_pids); do [ "$pid" != $$ ] && kill -9 "$pid" 2>/dev/null; done
  # Mounts under $T (overlay layers, shm), deepest first.
  findmnt -rn -o TARGET | grep -F -- "$T" | sort -r | while read -r m; do umount -l "$m"; done
  net_cleanup
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
# until_exited NAME: podman's status of NAME once it is "exited", or the
# last status seen after 10 s.
until_exited() {
  local st
  for _ in $(seq 50); do st=$(inspect "$1" '{{.State.Status}}'); [ "$st" = exited ] && break; sleep 0.2; done
  echo "$st"
}
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
  sh -c 'trap "exit 7" TERM; touch /tmp/ready; while :; do sleep 0.2; done'
# Once the trap is set: a TERM before it would be dropped (pid 1 of its
# namespace, default action), and stop would end in KILL.
c2pid=$(inspect c2 '{{.State.Pid}}')
for _ in $(seq 100); do [ -e "/proc/$c2pid/root/tmp/ready" ] && break; sleep 0.1; done
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
# podman records the exit once conmon has written the exit file, a moment
# after the process is gone: a status read right away can still be
# "running" or "stopped" (seen twice in CI, with the process already gone).
st1=$(until_exited h1)
if [ "$RC" = 0 ] && [ -n "$p1" ] && gone "$p1" && [ "$st1" = exited ]; then
  pass "--pid host: podman kill"
else
  fail "--pid host: podman kill" "rc $RC, host pid '$p1', status $st1, \
init pid $(inspect h1 '{{.State.Pid}}'); $(ps -o pid=,ppid=,stat=,args= -p "$p1" 2>&1); \
cgroup $(grep -m1 pids /proc/"$p1"/cgroup 2>&1)"
fi
run 60 "${P[@]}" run -d --name h2 --pid host --network none "$IMG" \
  sh -c "trap : TERM; sleep $m1 & sleep $m2 & wait; wait; echo done"
p1="" p2=""
for _ in $(seq 50); do
  p1=$(pgrep -x -f "sleep $m1") && p2=$(pgrep -x -f "sleep $m2") && break; sleep 0.1
done
run 30 "${P[@]}" stop -t 10 h2
for _ in $(seq 150); do gone "$p1" && gone "$p2" && break; sleep 0.1; done
st2=$(until_exited h2)
code=$(inspect h2 '{{.State.ExitCode}}')
if [ "$RC" = 0 ] && [ -n "$p1" ] && [ -n "$p2" ] && gone "$p1" && gone "$p2" && [ "$st2" = exited ] && [ "$code" = 0 ]; then
  pass "--pid host: stop's kill --all TERMs every process (init exits 0, no KILL)"
else fail "--pid host: stop (kill --all)" "rc $RC, pids '$p1' '$p2', status $st2, exit code $code"; fi
run 30 "${P[@]}" rm -f h1 h2

# --- --read-only ---------------------------------------------------------------
run 60 "${P[@]}" run --rm --read-only --network none "$IMG" sh -c 'touch /x'
expect "--read-only: / is read-only" 1 'Read-only file system'
run 60 "${P[@]}" run --rm --read-only --network none "$IMG" sh -c 'touch /tmp/x /var/tmp/x /run/x && echo writable-tmp'
expect "--read-only: /tmp, /var/tmp, /run are writable tmpfs" 0 '^writable-tmp$'

# --- egress policy annotations (org.sbx-oci.network.*) -------------------------
# podman passes --annotation into the config; sbx-oci's create turns the
# org.sbx-oci.network.* ones into its prestart hook, which installs the
# `inet sbx_oci` table in the container's namespace, and delete takes it out
# of a namespace the client made. Here that namespace is NA (podman --network
# ns:/run/netns/NA, as a pod or CNI would make it), joined by a veth pair to
# the test host NB on private addresses. NB's server answers "hi PORT" on
# TCP 8001, 8002 and 53, and a TFTP error packet "udp-ok PORT" to any
# datagram on UDP 8053, 8054 and 53 (busybox's tftp, the image's only UDP
# client, prints that message). Containers contact nothing but NB's
# addresses and their own loopback; net_cleanup (in the EXIT trap) removes
# the namespaces, veth pairs and server.
# podman splits --annotation values at commas (a CSV string slice): a list of
# entries goes through quoted as one CSV field, '"KEY=A,B"'.
B4=10.254.7.2 B6=fd00:5b0c:7::2
net_setup() {
  ip netns add "$NA" && ip netns add "$NB" \
    && ip link add "sbxp$$a" netns "$NA" type veth peer name "sbxp$$b" netns "$NB" \
    && ip -n "$NA" addr add 10.254.7.1/29 dev "sbxp$$a" \
    && ip -n "$NA" addr add fd00:5b0c:7::1/64 dev "sbxp$$a" nodad \
    && ip -n "$NB" addr add "$B4/29" dev "sbxp$$b" \
    && ip -n "$NB" addr add "$B6/64" dev "sbxp$$b" nodad \
    && ip -n "$NA" link set "sbxp$$a" up && ip -n "$NB" link set "sbxp$$b" up \
    && ip -n "$NA" link set lo up && ip -n "$NB" link set lo up || return 1
  cat > "$T/serve.py" <<'EOF'
# The test host's server: it only answers, and stops by itself (10 min).
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
for kind, ports in (("tcp", sys.argv[1]), ("udp", sys.argv[2])):
    for port in map(int, ports.split(",")):
        s = socket.socket(socket.AF_INET6,
                          socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        if kind == "tcp":
            s.listen(16)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, (kind, port))
open(sys.argv[3], "w").close()
end = time.monotonic() + 600
while time.monotonic() < end:
    for key, _ in sel.select(timeout=1):
        kind, port = key.data
        try:
            if kind == "tcp":
                c, _ = key.fileobj.accept()
                c.sendall(b"hi %d\n" % port)
                c.close()
            else:
                _, peer = key.fileobj.recvfrom(512)
                # TFTP ERROR: opcode 5, error code 0, message.
                key.fileobj.sendto(b"\0\5\0\0udp-ok %d\0" % port, peer)
        except OSError:
            pass
EOF
  ip netns exec "$NB" python3 "$T/serve.py" 8001,8002,53 8053,8054,53 "$T/serving" \
    >"$T/serve.log" 2>&1 &
  server_pid=$!
  disown "$server_pid"
  for _ in $(seq 50); do [ -e "$T/serving" ] && break; sleep 0.1; done
  [ -e "$T/serving" ] || return 1
  # A new neighbour is resolved on the first packet (an IPv6 SYN waits for a
  # 1 s retransmission); let that happen here, not under a probe's timeout.
  ip netns exec "$NA" busybox ping -c 1 -W 2 "$B4" >/dev/null \
    && ip netns exec "$NA" busybox ping -c 1 -W 2 "$B6" >/dev/null
}
# The container's probe: each argument is KIND:PORT, KIND t4 or t6 (TCP to
# $B4 or $B6), u4 (UDP to $B4) or tl (TCP to 127.0.0.1, where the probe
# serves port $LO itself when LO is set). Prints "KIND:PORT open|closed" in
# order and exits 0. The probes run in parallel, each bounded (a dropped TCP
# SYN: 1 s; UDP: 2 s).
PROBE='
[ -n "${LO:-}" ] && { nc -ll -p "$LO" -e echo hi "$LO" & sleep 0.2; }
i=0
for t in "$@"; do
  i=$((i + 1))
  (
    p=${t#*:}
    case $t in
      t4:*) r=$(timeout 3 nc -w 1 "$B4" "$p" </dev/null 2>&1) ;;
      t6:*) r=$(timeout 3 nc -w 1 "$B6" "$p" </dev/null 2>&1) ;;
      tl:*) r=$(timeout 3 nc -w 1 127.0.0.1 "$p" </dev/null 2>&1) ;;
      u4:*) r=$(timeout 2 tftp -g -r x -l /dev/null "$B4" "$p" 2>&1) ;;
    esac
    case $r in *"hi $p"* | *"udp-ok $p"*) echo "$t open" ;; *) echo "$t closed" ;; esac >/tmp/probe.$i
  ) &
  pids="${pids:-} $!"
done
wait $pids
i=0
for t in "$@"; do i=$((i + 1)); cat /tmp/probe.$i; done
'
# probe NAME "WANT" PODMAN-RUN-ARGS... -- KIND:PORT...: the probe in a
# `podman run --rm` container; passes when it exits 0 printing exactly WANT
# (one "KIND:PORT open|closed" per line).
probe() {
  local name=$1 want=$2 args=(); shift 2
  while [ "$1" != -- ]; do args+=("$1"); shift; done; shift
  run 60 "${P[@]}" run --rm "${args[@]}" "$IMG" sh -c "$PROBE" probe "$@"
  if [ "$RC" = 0 ] && [ "$OUT" = "$want" ]; then pass "$name"
  else fail "$name" "exit status $RC; want: $(tr '\n' ' ' <<<"$want")"; fi
}
# no_table NAME: netns NA holds no table of sbx-oci's (after a run).
no_table() {
  local t; t=$(ip netns exec "$NA" nft list tables 2>&1)
  if [ $? = 0 ] && ! grep -q sbx_oci <<<"$t"; then pass "$1"
  else OUT=$t; fail "$1" "nft list tables in $NA"; fi
}
NS=(--network "ns:/run/netns/$NA" -e B4=$B4 -e B6=$B6)
if ! net_setup; then
  OUT=$(cat "$T/serve.log" 2>/dev/null); fail "egress: the test network" "setup failed"
else
  # Control: mode=full installs nothing, and everything on NB answers.
  probe "egress: mode=full filters nothing (control)" "t4:8001 open
t6:8001 open
t4:8002 open
t6:8002 open
u4:8053 open" "${NS[@]}" --annotation org.sbx-oci.network.mode=full -- \
    t4:8001 t6:8001 t4:8002 t6:8002 u4:8053
  no_table "egress: mode=full leaves no table"

  probe "egress: allowlist (IPv4, [IPv6], udp://): only the listed ports answer" "t4:8001 open
t6:8001 open
t4:8002 closed
t6:8002 closed
u4:8054 open
u4:8053 closed
t4:53 closed
u4:53 closed" "${NS[@]}" \
    --annotation "\"org.sbx-oci.network.allow=$B4:8001,[$B6]:8001,udp://$B4:8054\"" \
    --annotation org.sbx-oci.network.dns= -- \
    t4:8001 t6:8001 t4:8002 t6:8002 u4:8054 u4:8053 t4:53 u4:53
  no_table "egress: allowlist: delete took the table out of the namespace"

  probe "egress: mode=none: loopback only" "tl:7777 open
t4:8001 closed
t6:8001 closed
u4:8053 closed" "${NS[@]}" -e LO=7777 --annotation org.sbx-oci.network.mode=none -- \
    tl:7777 t4:8001 t6:8001 u4:8053
  no_table "egress: mode=none leaves no table"

  # A detached container: the table is in NA while it runs (from the host's
  # view), exec'd processes are under it too, the runtime's stats see the
  # drops, and rm -f takes it out.
  run 60 "${P[@]}" run -d --name n1 "${NS[@]}" --annotation "org.sbx-oci.network.allow=$B4:8002" \
    --annotation "org.sbx-oci.network.dns=$B4" "$IMG" sleep 120
  expect "egress: run -d with allow and dns" 0 '^[0-9a-f]{64}$'
  cid=$(inspect n1 '{{.Id}}')
  t=$(ip netns exec "$NA" nft list table inet sbx_oci 2>&1)
  if grep -q "$B4" <<<"$t" && grep -q 8002 <<<"$t"; then
    pass "egress: the table is in the container's namespace while it runs"
  else OUT=$t; fail "egress: table while running" "no rule for $B4 . 8002"; fi
  run 60 "${P[@]}" exec n1 sh -c "$PROBE" probe t4:8002 t4:8001 u4:53 t4:53 u4:8053
  # Port 53 of the resolver is the container's DNS gatekeeper's now (all
  # DNS is redirected to it): the test server behind it never answers. (The
  # probe's nc to port 53 waits on the gatekeeper until its timeout kills
  # it, and the shell says "Terminated".)
  OUT=$(grep -vx 'Terminated' <<<"$OUT")
  if [ "$RC" = 0 ] && [ "$OUT" = "t4:8002 open
t4:8001 closed
u4:53 closed
t4:53 closed
u4:8053 closed" ]; then pass "egress: exec: the allowed port only; DNS (UDP, TCP 53) goes to the gatekeeper"
  else fail "egress: exec under the policy" "exit status $RC"; fi
  run 30 "$R" events --stats "$cid"
  if [ "$RC" = 0 ] && python3 -c '
import json, sys
d = json.loads(sys.argv[1])["data"]["network"]["dropped"]
sys.exit(not any((x["address"], x["protocol"], x["port"]) == (sys.argv[2], "tcp", 8001) for x in d))
' "$OUT" "$B4" 2>/dev/null; then
    pass "egress: sbx-oci events --stats lists the dropped $B4 tcp 8001"
  else fail "egress: events --stats" "exit status $RC, no dropped $B4 tcp 8001"; fi
  run 30 "${P[@]}" rm -f -t 0 n1
  if [ "$RC" = 0 ] && [ ! -e "/run/sbx-oci/$cid" ]; then no_table "egress: rm -f: the table is gone"
  else fail "egress: rm -f" "rc $RC"; fi

  # A malformed entry: create fails with sbx-oci's message quoting it,
  # before anything exists.
  run 60 "${P[@]}" run --name bad1 "${NS[@]}" \
    --annotation org.sbx-oci.network.allow=10.254.7.300:80 "$IMG" true
  cid=$(inspect bad1 '{{.Id}}')
  if [ "$RC" != 0 ] && grep 'OCI runtime error' <<<"$OUT" | grep -q -F "$R: sbx-oci: " \
     && grep -q -F '"10.254.7.300:80"' <<<"$OUT" && [ -n "$cid" ] && [ ! -e "/run/sbx-oci/$cid" ]; then
    pass "egress: a malformed entry fails the run with sbx-oci's message (exit $RC), no state"
    grep 'OCI runtime error' <<<"$OUT" | sed 's/^/     | /'
  else fail "egress: a malformed entry" "exit $RC, id '$cid'"; fi
  no_table "egress: a malformed entry leaves no table"
  timeout 30 "${P[@]}" rm -f bad1 >/dev/null 2>&1

  # The default netavark bridge: podman makes the namespace (eth0 on podman0,
  # NAT out through the host); the host reaches NB through a veth pair of
  # its own (10.254.N.0/30, a subnet the host does not use yet), so the
  # container's only route to NB is the test's. Nothing else is contacted.
  free=""
  for n in $(seq $(( $$ % 100 + 100 )) $(( $$ % 100 + 109 ))); do
    ip -4 route show | grep -q "^10\.254\.$n\." || { free=$n; break; }
  done
  H4=10.254.$free.2
  host_veth=sbxp$$h
  if [ -n "$free" ] && ip link add "$host_veth" type veth peer name "sbxp$$c" netns "$NB" \
     && ip addr add "10.254.$free.1/30" dev "$host_veth" && ip link set "$host_veth" up \
     && ip -n "$NB" addr add "$H4/30" dev "sbxp$$c" && ip -n "$NB" link set "sbxp$$c" up \
     && busybox ping -c 1 -W 2 "$H4" >/dev/null; then
    probe "egress: default bridge: allowlist over netavark's namespace" "t4:8001 open
t4:8002 closed" -e B4=$H4 --annotation "org.sbx-oci.network.allow=$H4:8001" \
      --annotation org.sbx-oci.network.dns= -- t4:8001 t4:8002
  else fail "egress: default bridge" "cannot join the host to $NB"; fi
fi

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
