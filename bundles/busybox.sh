#!/usr/bin/env bash
# Builds an OCI bundle whose rootfs is Debian's static busybox:
#   bundles/busybox.sh DIR      -> DIR/config.json, DIR/rootfs/
# Needs the busybox-static package. Copies, never links into, the host: the
# bundle is self-contained and can be deleted with rm -rf.
set -euo pipefail

dir=${1:?usage: bundles/busybox.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
busybox=/bin/busybox
linkage=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
if ! "$busybox" --list >/dev/null 2>&1 || [[ "$linkage" != *"not a dynamic executable"* ]]; then
  echo "bundles/busybox.sh: need a static $busybox: apt-get install busybox-static" >&2
  exit 1
fi

rootfs=$dir/rootfs
mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,tmp,root,var/tmp}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
cp "$here/config.json" "$dir/config.json"
