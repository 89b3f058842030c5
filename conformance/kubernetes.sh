#!/usr/bin/env bash
# The Kubernetes entry of docs/kubernetes.md, checked: a private containerd
# (root, state, sockets and CNI dirs in a temp dir) starts with the CRI plugin
# enabled and sbx-oci configured as the runtime handler "sbx-oci"
# (runtime_type io.containerd.runc.v2, options.BinaryName = $R). Checks the CRI
# plugin loaded, and that both `containerd config dump` and the CRI plugin's
# own parsed configuration carry the handler; then stops containerd and
# removes everything. No pod is run (that needs a pause image and a CRI
# client; conformance/containerd.sh covers the runc v2 shim with sbx-oci).
#   conformance/kubernetes.sh [/abs/path/to/sbx-oci]   (default: the debug build, target/<host tuple>/debug/sbx-oci)
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
R=$(realpath -m "${1:-$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/debug/sbx-oci}")
[ -x "$R" ] || { echo "kubernetes.sh: no runtime binary at $R (cargo build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "kubernetes.sh: run as root" >&2; exit 2; }

PKGS=(containerd)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${PKGS[@]}" || exit 2
fi

had_run_containerd=0; [ -e /run/containerd ] && had_run_containerd=1
T=$(mktemp -d /tmp/sbx-k8s.XXXXXX)
SOCK=$T/containerd.sock
mkdir -p "$T/opt" "$T/cni/bin" "$T/cni/net.d"
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
daemon=""

cleanup() {
  set +e
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill "$daemon"
    for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon" 2>/dev/null
  fi
  findmnt -rn -o TARGET | grep -F -- "$T" | sort -r | while read -r m; do umount -l "$m"; done
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

echo "kubernetes.sh: $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
