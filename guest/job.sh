#!/bin/bash
# Runs in the guest, as root, once the system is up: every line of
# target/guest/job ("NAME COMMAND [ARGS...]", written by guest/run.sh) in
# the repository's directory, as cargo would run a test binary. Everything
# goes to the second serial port, which run.sh reads on the host.
exec >/dev/ttyS1 2>&1
set -u
[ -n "${SBX_REPO:-}" ] || . /etc/sbx-guest.env
cd "$SBX_REPO" || { echo "sbx-guest: no repository at $SBX_REPO"; exit 1; }
export HOME=${HOME:-/root} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The guest's virtio disk, for the tests that need a real block device
# (I/O accounting): a fresh ext4 file system, its directory writable by the
# sandboxes' default user.
if modprobe virtio_blk 2>/dev/null && udevadm settle 2>/dev/null; [ -b /dev/vda ]; then
  mkfs.ext4 -q -F /dev/vda && mkdir -p /mnt/sbx-disk && mount /dev/vda /mnt/sbx-disk \
    && mkdir /mnt/sbx-disk/rw && chown 65534:65534 /mnt/sbx-disk/rw \
    && export SBX_TEST_BLOCK_DIR=/mnt/sbx-disk/rw \
    && mkdir -m 1777 /mnt/sbx-disk/tmp && export TMPDIR=/mnt/sbx-disk/tmp
  # (The tests' directories go there too, as on a stock host whose /tmp is
  # on its root file system; the guest's own /tmp is a tmpfs.)
fi
cg=$(stat -fc %T /sys/fs/cgroup)
echo "sbx-guest: kernel $(uname -r), /sys/fs/cgroup is $cg ($(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)), init $(cat /proc/1/comm)"
while read -r name cmd; do
  [ -n "$name" ] && [ "${name#\#}" = "$name" ] || continue
  echo "sbx-guest: == $name"
  t0=$(date +%s)
  bash -c "$cmd" </dev/null
  echo "sbx-guest: == $name: exit $? in $(( $(date +%s) - t0 )) s"
done < target/guest/job
echo "sbx-guest: done"
