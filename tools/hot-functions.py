#!/usr/bin/env python3
"""Makes tools/hot-functions.txt: the functions that sbx-oci's common
commands execute, which build.rs hands to the linker
(`--symbol-ordering-file`) so that they sit together at the start of .text.

Why: the kernel maps a file's pages 64 KiB at a time around each touched
page ("fault-around"). With the hot functions scattered over 4 MiB of text,
a `run` mapped nearly all of it: 3.9 of its 5.4 MiB of peak RSS were text.
Packed, it maps ~1.6 MiB (docs/performance.md, session 10).

How the list is found, exactly and without instrumenting the code:
1. a release build with every function aligned to its own page
   (`-C llvm-args=-align-all-functions=12`, into target/hot-functions;
   same symbol names as the normal release build), so that a touched page
   names one function;
2. that binary copied to a small ext4 image mounted with readahead 0 and
   remounted (its page cache is empty): then the page cache holds exactly
   the pages some process touched, since fault-around maps only cached pages;
3. the workload below run with it (run, exec, create/start/delete, kill,
   state, ps, list, the sandbox commands, a networked sandbox: no traffic);
4. mincore(2) on the file gives the touched pages; every function that
   overlaps one is listed, in address order.

Root (mounts, containers); busybox-static for the bundle. Run it again after
large changes: names of changed functions no longer match, and the linker
skips them quietly, so the list decays gracefully (lifecycle.py's peak RSS
shows when it has).

    python3 tools/hot-functions.py
"""
import ctypes
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(REPO, "tools", "hot-functions.txt")
PLAIN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def host_tuple():
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(l.split()[1] for l in out.splitlines() if l.startswith("host:"))


def build_aligned():
    target = os.path.join(REPO, "target", "hot-functions")
    subprocess.run(["cargo", "rustc", "--release", "--locked", "--bin", "sbx-oci",
                    "--target-dir", target, "--",
                    "-C", "llvm-args=-align-all-functions=12"], cwd=REPO, check=True)
    return os.path.join(target, host_tuple(), "release", "sbx-oci")


def touched_pages(path):
    """File offsets of PATH's pages in the page cache."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        n = (size + 4095) // 4096
        vec = (ctypes.c_ubyte * n)()
        ok = libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0
        errno = ctypes.get_errno()
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
        if not ok:
            raise OSError(errno, "mincore")
        return [i * 4096 for i in range(n) if vec[i] & 1]
    finally:
        os.close(fd)


def workload(binary, work):
    root, bundle = os.path.join(work, "root"), os.path.join(work, "bundle")
    subprocess.run(["bash", os.path.join(REPO, "bundles", "busybox.sh"), bundle],
                   check=True, stdout=subprocess.DEVNULL)
    config_path = os.path.join(bundle, "config.json")
    config = json.load(open(config_path))
    config["process"]["terminal"] = False

    def args(argv):
        config["process"]["args"] = argv
        with open(config_path, "w") as f:
            json.dump(config, f)

    def sbx(*argv):
        # Errors to a file: a detached container keeps a pipe open.
        with tempfile.TemporaryFile(mode="w+") as err:
            r = subprocess.run([binary, "--root", root, *argv], env=PLAIN_ENV,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            if r.returncode != 0:
                err.seek(0)
                sys.exit(f"workload step {argv} failed: {err.read().strip()}")

    args(["sleep", "1000"])
    sbx("run", "--detach", "--bundle", bundle, "w1")
    sbx("exec", "w1", "true")
    sbx("state", "w1")
    sbx("list")
    sbx("ps", "w1")
    sbx("kill", "w1", "KILL")
    sbx("delete", "--force", "w1")
    args(["true"])
    sbx("run", "--bundle", bundle, "w2")
    sbx("create", "--bundle", bundle, "w3")
    sbx("start", "w3")
    sbx("delete", "--force", "w3")
    sbx("sandbox", "run", "--", "true")
    # A networked sandbox (its prestart hook, uplink, nftables): `true`
    # sends nothing; the addresses are private and unused.
    sbx("sandbox", "run", "--allow", "10.213.0.1:80", "--dns", "10.213.0.2", "--", "true")
    sbx("sandbox", "create", "s1")
    sbx("sandbox", "exec", "s1", "--", "true")
    sbx("sandbox", "list")
    sbx("sandbox", "rm", "--force", "s1")


def functions_on(binary, offsets):
    """Names of the functions overlapping the touched offsets, by address."""
    pages = set()
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            off, va, size = int(f[1], 16), int(f[2], 16), int(f[4], 16)
            pages |= {(o + va - off) // 4096 for o in offsets if off <= o < off + size}
    found = {}
    for line in subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        f = line.split()
        if len(f) < 4 or f[2] not in "tTwW":
            continue
        addr, size, name = int(f[0], 16), int(f[1], 16), f[3]
        if size and any(p in pages for p in range(addr // 4096, (addr + size - 1) // 4096 + 1)):
            found.setdefault(name, addr)
    return sorted(found, key=found.get), len(pages)


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (it mounts an image and runs containers)")
    aligned = build_aligned()
    work = tempfile.mkdtemp(prefix="sbx-hot-")
    image, mnt = os.path.join(work, "image"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)

    def mount():
        subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
        dev = subprocess.run(["findmnt", "-no", "SOURCE", mnt], capture_output=True, text=True,
                             check=True).stdout.strip()
        subprocess.run(["blockdev", "--setra", "0", dev], check=True)

    try:
        mount()
        binary = os.path.join(mnt, "sbx-oci")
        shutil.copy(aligned, binary)
        subprocess.run(["umount", mnt], check=True)
        mount()  # an empty page cache for the copy
        workload(binary, work)
        names, pages = functions_on(binary, touched_pages(binary))
    finally:
        # Whatever a failed step left running.
        state = os.path.join(work, "root")
        for argv in (["delete", "--force", "w1"], ["delete", "--force", "w3"],
                     ["sandbox", "rm", "--force", "s1"]):
            subprocess.run([aligned, "--root", state, *argv], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        # The containers' mount namespaces (copies of this mount, detached
        # at pivot_root) are freed shortly after their last process exits.
        for _ in range(50):
            if subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.2)
        shutil.rmtree(work, ignore_errors=True)
    with open(OUT, "w") as f:
        f.write("".join(n + "\n" for n in names))
    print(f"{pages} pages of text touched: {len(names)} functions -> {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
