#!/usr/bin/env bash
# Runs the OCI runtime-tools validation suite against sbx-oci, one test file
# at a time, and cleans up after each file.
#
#   conformance/validation.sh SUITE_DIR [RUNTIME]
#
# SUITE_DIR: a runtime-tools checkout with `make runtimetest
# validation-executables` done (see conformance/README.md; the suite is built
# outside this repository). RUNTIME: the sbx-oci binary (default: this
# worktree's target/release/sbx-oci). Needs root, util-linux (unshare, mount).
#
# Each file runs in its own mount namespace (slave propagation: host mounts
# still arrive, nothing it mounts leaks out) with a fresh tmpfs over sbx-oci's
# default state root. The suite calls the runtime with no --root, so this is
# how it gets a private state root: the host's /run/sbx-oci and any container
# in it are never seen or touched. Bundles go to a private TMPDIR. After each
# file: whatever containers it left are deleted with --force, its bundles are
# removed, and the empty cgroups the suite creates (cgrouptest, testdir/...)
# are removed.
#
# A file passes when it exits 0 and its TAP output has no `not ok` line (and,
# when it has no test point at all, no "error" diagnostic: the hook tests
# report their failures that way).
# Per-file TAP and stderr are kept in $OUT (default /tmp/sbx-oci-validation).
# Environment: TIMEOUT (seconds per file, default 120), ONLY (a regex: run only
# files whose name matches), OUT.
set -u

usage() {
	echo "usage: $0 SUITE_DIR [RUNTIME]" >&2
	exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
[ "$(id -u)" = 0 ] || {
	echo "$0: run as root" >&2
	exit 2
}

here=$(cd "$(dirname "$0")/.." && pwd)
suite=$(cd "$1" && pwd) || usage
runtime=${2:-$here/target/release/sbx-oci}
runtime=$(readlink -f "$runtime")
[ -x "$runtime" ] || {
	echo "$0: runtime $runtime is not an executable" >&2
	exit 2
}
[ -x "$suite/runtimetest" ] || {
	echo "$0: $suite/runtimetest missing: run 'make runtimetest validation-executables' there" >&2
	exit 2
}
timeout_s=${TIMEOUT:-120}
only=${ONLY:-.}
out=${OUT:-/tmp/sbx-oci-validation}
state_root=/run/sbx-oci # sbx-oci's default --root, hidden per file below
rm -rf "$out"
mkdir -p "$out"

# One test file, run inside its private mount namespace.
inner='
	set -u
	t=$1 runtime=$2 root=$3 tap=$4 err=$5 timeout_s=$6
	mkdir -p "$root" && mount -t tmpfs -o mode=0700 sbx-oci-validation "$root" || exit 125
	RUNTIME=$runtime timeout -k 10 "$timeout_s" "$t" >"$tap" 2>"$err"
	rc=$?
	# Containers the file left behind (a failed test, a timeout).
	for d in "$root"/*/; do
		[ -d "$d" ] || continue
		"$runtime" delete --force "$(basename "$d")" >/dev/null 2>&1
	done
	exit $rc
'

# Empty cgroups the suite creates (cgroups.AbsCgroupPath, RelCgroupPath).
clean_cgroups() {
	local c
	for c in /sys/fs/cgroup/*/; do
		rmdir "$c"testdir/cgrouptest/container "$c"testdir/cgrouptest "$c"testdir \
			"$c"cgrouptest 2>/dev/null
	done
}

# Mounts under a directory (deepest first), in this namespace.
umount_under() {
	awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
}

pass=0
fail=0
failed=()
cd "$suite" || exit 2
for t in validation/*/*.t; do
	name=$(basename "$t" .t)
	[[ $name =~ $only ]] || continue
	tmp=$(mktemp -d /tmp/sbx-oci-validation-tmp.XXXXXX)
	chmod 0755 "$tmp" # a user-namespaced container must reach its bundle
	start=$(date +%s%N)
	TMPDIR=$tmp unshare --mount --propagation slave \
		bash -c "$inner" _ "./$t" "$runtime" "$state_root" \
		"$out/$name.tap" "$out/$name.err" "$timeout_s"
	rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
	umount_under "$tmp"
	rm -rf "$tmp"
	clean_cgroups
	notok=$(grep -c '^not ok' "$out/$name.tap")
	oks=$(grep -c '^ok' "$out/$name.tap")
	# Some files (the hook tests) report a failure only as an "error"
	# diagnostic under an empty plan (1..0), not as a `not ok` line.
	errdiag=0
	[ "$oks" = 0 ] && grep -q '^ *"error":' "$out/$name.tap" && errdiag=1
	if [ "$rc" = 0 ] && [ "$notok" = 0 ] && [ "$errdiag" = 0 ]; then
		pass=$((pass + 1))
		printf 'PASS %-40s %4d ok            %6ss\n' "$name" "$oks" "$secs"
	else
		fail=$((fail + 1))
		failed+=("$name")
		why="exit $rc"
		[ "$rc" = 124 ] && why="timeout"
		[ "$errdiag" = 1 ] && why="error diagnostic"
		printf 'FAIL %-40s %4d ok %3d not ok %6ss  (%s)\n' "$name" "$oks" "$notok" "$secs" "$why"
	fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "TAP and stderr per file: $out"
echo "$pass passed, $fail failed"
