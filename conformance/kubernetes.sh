#!/usr/bin/env bash
# The Kubernetes entry of docs/kubernetes.md, checked, and a pod run through
# it: a private containerd (root, state, sockets and CNI dirs in a temp dir)
# starts with the CRI plugin enabled and sbx-oci configured as the runtime
# handler "sbx-oci" (runtime_type io.containerd.runc.v2, options.BinaryName =
# $R). Checks the CRI plugin loaded, and that both `containerd config dump`
# and the CRI plugin's own parsed configuration carry the handler. Then the
# CRI client conformance/cri (built here) drives pods through the CRI v1 API
# as the kubelet does, with a pause image and a busybox image built and
# imported locally (no registry) and pod networking from a tiny CNI plugin of
# our own (conformance/cni/sbx-cri-veth: a veth pair to a test host
# namespace made here, private 10.213.x.x addresses); then checks nothing of
# the pods is left (runtime state, cgroups, processes, mounts, netns, veths)
# and removes everything.
#   conformance/kubernetes.sh [/abs/path/to/sbx-oci]   (default: the debug build, target/<host tuple>/debug/sbx-oci)
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
R=$(realpath -m "${1:-$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/debug/sbx-oci}")
[ -x "$R" ] || { echo "kubernetes.sh: no runtime binary at $R (cargo build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "kubernetes.sh: run as root" >&2; exit 2; }

# containerd: the CRI plugin; busybox-static: the images; iproute2 and
# util-linux (nsenter, flock): the CNI plugin and the test host; python3: the
# test host's listener; procps: pgrep.
PKGS=(containerd busybox-static iproute2 util-linux python3 procps)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}" || exit 2
fi

had_run_containerd=0; [ -e /run/containerd ] && had_run_containerd=1
T=$(mktemp -d /tmp/sbx-k8s.XXXXXX)
SOCK=$T/containerd.sock
mkdir -p "$T/opt" "$T/cni/bin" "$T/cni/net.d" "$T/logs"
# The pods' cgroups go under this parent (cgroupfs), the test host is this
# network namespace; both are this run's own.
CG_PARENT=/sbx-cri-$$
HOSTNS=sbx-cri-host-$$
SERVICE=10.213.255.1 OPEN_PORT=8081 CLOSED_PORT=8082
SERVICE_NAME=svc.sbx-cri.test RESOLVER=127.213.0.53
PAUSE_IMG=localhost/sbx-pause:latest
IMG=localhost/busybox:latest
# The runc v2 shim's --root for the k8s.io namespace (fixed, not under the
# private state dir); the client checks the sandbox's state appears there.
RUNTIME_ROOT=/run/containerd/runc/k8s.io
had_netns_dir=0; [ -e /run/netns ] && had_netns_dir=1
# The runtime entry is the one docs/kubernetes.md gives, with private paths.
cat > "$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$T/debug.sock"
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/opt"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "$PAUSE_IMG"
  # This machine's root lacks CAP_SYS_RESOURCE: the sandbox's oomScoreAdj
  # (-998) could not be set, by runc or sbx-oci. Keep it at containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$T/cni/bin"
    conf_dir = "$T/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sbx-oci]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["org.sbx-oci.network.*"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sbx-oci.options]
      BinaryName = "$R"
EOF
C=(ctr -a "$SOCK")
K=("${C[@]}" -n k8s.io)
daemon="" listener="" resolver="" client=""

# The CNI plugin, also as "loopback" (go-cni always adds that network), and
# its network: the test host's namespace and service address.
cp "$REPO/conformance/cni/sbx-cri-veth" "$T/cni/bin/sbx-cri-veth"
cp "$REPO/conformance/cni/sbx-cri-veth" "$T/cni/bin/loopback"
cat > "$T/cni/net.d/10-sbx-cri.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "sbx-cri", "plugins": [{"type": "sbx-cri-veth",
  "hostNetns": "$HOSTNS", "stateDir": "$T/cni/state", "serviceIP": "$SERVICE"}]}
EOF

# Processes whose command line names $T: containerd and its shims.
our_pids() { grep -l -F -- "$T" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3; }
# The namespaces of this run's pods that still exist (the CNI plugin notes
# each pod's CNI_NETNS in its state dir).
pod_netns() { cat "$T"/cni/state/netns.* 2>/dev/null | sort -u | while read -r n; do [ -e "$n" ] && echo "$n"; done; }
# Processes in the pods' cgroups.
cg_pids() { find /sys/fs/cgroup/*"$CG_PARENT" -name cgroup.procs -exec cat {} + 2>/dev/null; }

cleanup() {
  set +e
  # No more CRI calls: the client first.
  if [ -n "$client" ] && kill "$client" 2>/dev/null; then
    sleep 0.5
    echo "kubernetes.sh: interrupted; the CRI client's output so far:"
    sed 's/^/     | /' "$T/cri.out" 2>/dev/null
  fi
  if [ "${failed:-0}" != 0 ] && [ -e "$T/containerd.log" ]; then
    echo "kubernetes.sh: containerd's errors and warnings (last 30):"
    grep -E 'level=(error|warning)' "$T/containerd.log" | tail -30 | sed 's/^/     | /'
  fi
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    # What a failed run left: tasks and containers of the k8s.io namespace.
    for id in $(timeout 10 "${K[@]}" task ls -q 2>/dev/null); do
      timeout 10 "${K[@]}" task kill -a -s SIGKILL "$id" >/dev/null 2>&1
      timeout 20 "${K[@]}" task rm -f "$id" >/dev/null 2>&1
    done
    for id in $(timeout 10 "${K[@]}" container ls -q 2>/dev/null); do
      timeout 20 "${K[@]}" container rm "$id" >/dev/null 2>&1
      [ -d "$RUNTIME_ROOT/$id" ] && timeout 20 "$R" --root "$RUNTIME_ROOT" delete --force "$id" >/dev/null 2>&1
    done
    kill "$daemon"
    for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon" 2>/dev/null
  fi
  # Shims (and a shim being started as containerd stopped), until none is left.
  for _ in $(seq 10); do
    left=$(our_pids | grep -v -x $$)
    [ -z "$left" ] && break
    kill -9 $left 2>/dev/null; sleep 0.2
  done
  cg_pids | xargs -r kill -9 2>/dev/null
  [ -n "$listener" ] && kill "$listener" 2>/dev/null
  [ -n "$resolver" ] && kill "$resolver" 2>/dev/null
  sleep 0.2
  for d in /sys/fs/cgroup/*"$CG_PARENT"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  findmnt -rn -o TARGET | grep -F -- "$T" | sort -r | while read -r m; do umount -l "$m"; done
  # Namespaces of our pods (the CNI plugin noted them) containerd did not
  # remove, then the test host (its veth ends, and so the pairs, go with it).
  for n in $(pod_netns); do
    umount "$n" 2>/dev/null; rm -f "$n"
  done
  ip netns del "$HOSTNS" 2>/dev/null
  # ip(8) and containerd leave /run/netns bind-mounted on itself: undone
  # when this run made it and nothing else is in it.
  if [ $had_netns_dir = 0 ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
    mountpoint -q /run/netns && umount /run/netns
    rmdir /run/netns 2>/dev/null
  fi
  if [ $had_run_containerd = 0 ] && [ -e /run/containerd ]; then
    findmnt -rn -o TARGET | grep '^/run/containerd' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf /run/containerd
  fi
  rm -rf "$T"
}
trap cleanup EXIT

passed=0 failed=0
OUT="" RC=0
run() { local s=$1; shift; OUT=$(timeout -k 5 "$s" "$@" 2>&1 </dev/null); RC=$?; }
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; [ -n "$OUT" ] && sed 's/^/     | /' <<<"$OUT" | head -20; }
expect() {
  if [ "$RC" != "$2" ]; then fail "$1" "exit status $RC, want $2"
  elif ! grep -q -E -- "$3" <<<"$OUT"; then fail "$1" "output does not match /$3/"
  else pass "$1"; fi
}

start=$(date +%s)
run 30 containerd --config "$T/config.toml" config dump
# block TABLE: the keys of one table of the dump, up to the next table.
block() { awk -v t="[$1]" '$1==t{on=1; next} on && /^[[:space:]]*\[/{exit} on' <<<"$OUT"; }
[ "$RC" = 0 ] && block 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sbx-oci' \
  | grep -q -x '[[:space:]]*runtime_type = "io.containerd.runc.v2"' \
  && pass "config dump: handler sbx-oci, runtime_type io.containerd.runc.v2" \
  || fail "config dump: handler sbx-oci" "no runtime_type io.containerd.runc.v2"
block 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sbx-oci.options' \
  | grep -q -x "[[:space:]]*BinaryName = \"$R\"" \
  && pass "config dump: options.BinaryName is sbx-oci" || fail "config dump: options.BinaryName" "not $R"

setsid containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 </dev/null &
daemon=$!
for _ in $(seq 100); do "${C[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
run 10 "${C[@]}" plugins ls
expect "containerd starts with the CRI plugin loaded (ok)" 0 \
  '^io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]]+[^[:space:]]+[[:space:]]+ok'
# The CRI plugin logs the configuration it parsed and serves.
for _ in $(seq 50); do grep -q 'Start cri plugin with config' "$T/containerd.log" && break; sleep 0.1; done
OUT=$(grep -o 'Start cri plugin with config.*' "$T/containerd.log" | head -1); RC=0
expect "the CRI plugin serves the sbx-oci handler (runc v2 shim, BinaryName)" 0 \
  "sbx-oci:\{Type:io\.containerd\.runc\.v2 .*PodAnnotations:\[org\.sbx-oci\.network\.\*\].*BinaryName:$R"


# --- a pod through the CRI API -----------------------------------------------
# The client, built before the pods (its first build counts in the run time).
t_build=$(date +%s)
run 900 cargo build --locked -q --manifest-path "$REPO/conformance/cri/Cargo.toml"
CRI_CHECK=$(ls -t "$REPO"/conformance/cri/target/*/debug/cri-check "$REPO"/conformance/cri/target/debug/cri-check 2>/dev/null | head -1)
if [ "$RC" = 0 ] && [ -x "$CRI_CHECK" ]; then
  pass "the CRI client (conformance/cri) builds ($(( $(date +%s) - t_build )) s)"
else fail "the CRI client (conformance/cri) builds" "cargo exit $RC"; fi

# The images: an OCI archive with a pause image (static busybox, sleep as
# the pod's process) and the busybox image, imported into the k8s.io
# namespace, where the CRI plugin finds them with no registry.
oci=$T/oci
mkdir -p "$oci/blobs/sha256"
blob() { # blob FILE -> moves FILE into blobs, prints "digest size"
  local d s; d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
  mv "$1" "$oci/blobs/sha256/$d"; echo "sha256:$d $s"
}
case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
manifests=""
# image NAME ROOTFS CONFIG-FIELDS: adds one image to the layout.
image() {
  local layer layer_size config config_size manifest manifest_size
  tar -C "$2" -cf "$T/layer.tar" . || return 1
  read -r layer layer_size < <(blob "$T/layer.tar")
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],%s},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$arch" "$3" "$layer" > "$T/config.json"
  read -r config config_size < <(blob "$T/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" > "$T/manifest.json"
  read -r manifest manifest_size < <(blob "$T/manifest.json")
  manifests="$manifests${manifests:+,}$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}' \
    "$manifest" "$manifest_size" "$1")"
}
"$REPO/bundles/busybox.sh" "$T/bb" >/dev/null || exit 2
# The pause image: busybox alone, sleeping; the mount points of a sandbox.
mkdir -p "$T/pause"/{bin,dev,proc,sys,etc,tmp,run}
install -m 0755 /bin/busybox "$T/pause/bin/busybox"
ln -s busybox "$T/pause/bin/sleep"
: > "$T/pause/etc/hosts"; : > "$T/pause/etc/hostname"; : > "$T/pause/etc/resolv.conf"
image "$PAUSE_IMG" "$T/pause" '"Entrypoint":["/bin/sleep"],"Cmd":["2147483647"]' \
  && image "$IMG" "$T/bb/rootfs" '"Cmd":["sh"]' || exit 2
printf '{"schemaVersion":2,"manifests":[%s]}' "$manifests" > "$oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
tar -C "$oci" -cf "$T/images.tar" . || exit 2
run 60 "${K[@]}" images import "$T/images.tar"
run 10 "${K[@]}" images ls -q
expect "ctr -n k8s.io images import: the pause and busybox images" 0 "^$PAUSE_IMG\$"

# The test host: a network namespace with the service address on its
# loopback and a listener answering "hello-PORT" on two ports (for 10 min at
# most). The CNI plugin joins each pod to it by a veth pair.
ip netns add "$HOSTNS" && ip -n "$HOSTNS" link set lo up \
  && ip -n "$HOSTNS" addr add "$SERVICE/32" dev lo || exit 2
cat > "$T/listener.py" <<'EOF'
# tcp HOST PORT PORT READY: answers "hello-PORT" on each port.
# dns HOST NAME ADDR READY: a resolver on UDP HOST:53 knowing NAME (A ADDR);
# other names NXDOMAIN. Each mode ends after 10 minutes.
import selectors, socket, struct, sys, time
mode, host = sys.argv[1], sys.argv[2]
sel = selectors.DefaultSelector()
if mode == "tcp":
    for p in (int(sys.argv[3]), int(sys.argv[4])):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, p))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ, p)
else:
    name, addr = sys.argv[3].lower(), socket.inet_aton(sys.argv[4])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((host, 53))
    sel.register(u, selectors.EVENT_READ, None)
open(sys.argv[5], "w").close()

def answer(q):
    i, labels = 12, []
    while i < len(q) and q[i] != 0 and len(labels) < 64:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    known = ".".join(labels).lower() == name
    rcode = 0 if known else 3
    body = b""
    if known and qtype == 1:
        body = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + addr
    head = q[:2] + struct.pack("!HHHHH", 0x8180 | rcode, 1, 1 if body else 0, 0, 0)
    return head + question + body

end = time.monotonic() + 600
while time.monotonic() < end:
    for key, _ in sel.select(timeout=1):
        if mode == "tcp":
            c, _ = key.fileobj.accept()
            c.settimeout(2)
            try:
                c.sendall(b"hello-%d\n" % key.data)
            except OSError:
                pass
            c.close()
        else:
            q, peer = key.fileobj.recvfrom(512)
            try:
                key.fileobj.sendto(answer(q), peer)
            except (OSError, IndexError, struct.error):
                pass
EOF
ip netns exec "$HOSTNS" timeout 600 python3 "$T/listener.py" tcp "$SERVICE" "$OPEN_PORT" "$CLOSED_PORT" "$T/listening" \
  >"$T/listener.log" 2>&1 </dev/null &
listener=$!
# The resolver a pod's DNS gatekeeper asks (from the host's namespace): on
# a loopback address of the host, knowing one name, the test host's.
timeout 600 python3 "$T/listener.py" dns "$RESOLVER" "$SERVICE_NAME" "$SERVICE" "$T/resolving" \
  >"$T/resolver.log" 2>&1 </dev/null &
resolver=$!
disown "$listener" "$resolver"   # killed by cleanup, without the shell's job notice
for _ in $(seq 50); do [ -e "$T/listening" ] && [ -e "$T/resolving" ] && break; sleep 0.1; done
[ -e "$T/listening" ] && [ -e "$T/resolving" ] \
  || { cat "$T/listener.log" "$T/resolver.log"; echo "kubernetes.sh: the test host's listener or resolver did not start" >&2; }

mounts_before=$(findmnt -rn -o TARGET | grep -E -- "^($T|/run/containerd)" | sort)
if [ -x "$CRI_CHECK" ]; then
  # In the background, so that cleanup can stop it first.
  timeout -k 5 300 "$CRI_CHECK" --socket "$SOCK" --handler sbx-oci --image "$IMG" \
    --log-dir "$T/logs" --cgroup-parent "$CG_PARENT" --runtime-root "$RUNTIME_ROOT" \
    --test-host "$SERVICE" --open-port "$OPEN_PORT" --closed-port "$CLOSED_PORT" \
    --service-name "$SERVICE_NAME" --resolver "$RESOLVER" \
    --streaming >"$T/cri.out" 2>&1 </dev/null &
  client=$!
  wait "$client"; client=""
  # Its lines are this script's; its own total is folded into ours.
  while IFS= read -r line; do
    case $line in
      "ok   "*) passed=$((passed + 1)); echo "$line" ;;
      "FAIL "*) failed=$((failed + 1)); echo "$line" ;;
      *" passed, "*" failed") cri_total=$line ;;
      *) echo "     | $line" ;;
    esac
  done <"$T/cri.out"
  [ -n "${cri_total:-}" ] || fail "the CRI client ran to its end" "no closing line (crashed or timed out)"
fi

# --- nothing of the pods is left ----------------------------------------------
OUT=$(ls -A "$RUNTIME_ROOT" 2>/dev/null); RC=0
expect "no container state left in the shim's runtime root $RUNTIME_ROOT" 0 '^$'
# A shim leaves after containerd's Shutdown returns, in its own time: the
# checks of processes and cgroups give it up to 10 s.
left_cgroups() { find /sys/fs/cgroup/*"$CG_PARENT" -mindepth 2 -type d 2>/dev/null; cg_pids; }
left_procs() {
  for p in $(our_pids); do [ "$p" != "$daemon" ] && [ "$p" != $$ ] && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" && echo; done | grep -v -F "$T/listener.py"
}
for _ in $(seq 50); do [ -z "$(left_cgroups)$(left_procs)" ] && break; sleep 0.2; done
OUT=$(left_cgroups); RC=0
expect "no cgroup or process left under the pods' cgroup parent $CG_PARENT" 0 '^$'
OUT=$(left_procs); RC=0
expect "no shim or other process of the pods left (only containerd)" 0 '^$'
OUT=$(comm -13 <(echo "$mounts_before") <(findmnt -rn -o TARGET | grep -E -- "^($T|/run/containerd)" | sort)); RC=0
expect "no mount of the pods left (rootfs, shm)" 0 '^$'
OUT=$(pod_netns; ip -n "$HOSTNS" -o link show type veth 2>/dev/null); RC=0
expect "no pod network namespace or veth left (CNI DEL ran)" 0 '^$'

echo "kubernetes.sh: $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
