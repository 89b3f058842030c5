#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each; a crash fails with
# its input under fuzz/artifacts/. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
# cargo fuzz sets RUSTFLAGS, which replaces .cargo/config.toml's (static
# linking, the library path): link libseccomp as a shared library here.
export LIBSECCOMP_LINK_TYPE=dylib
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${secs}s"
  # -s none: the targets are safe Rust (a sanitizer would rebuild
  # libcontainer with it for nothing); libFuzzer's coverage guides it.
  if ! cargo +nightly fuzz run -s none "$target" -- -max_total_time="$secs" \
       -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target failed"
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" || tail -3 "$log"
done
echo "fuzz: all targets ran ${secs}s each without a failure"
