#!/usr/bin/env python3
"""Lifecycle benchmark: `RUNTIME run` of `true` on the busybox bundle
(create, start, wait, delete in one command), sbx-oci against a reference
runtime (runc by default), alternated run by run so both see the same machine;
and sbx-oci's `sandbox run -- true` (host rootfs, seccomp, the sandbox's
mounts and limits) against sbx-oci's plain `run` in the same rotation.
The host's `true` is coreutils', dynamically linked (its loader maps libc:
~0.3 ms), the bundle's is static busybox; so the sandbox is also timed
running the host's same static busybox (`sandbox run -- busybox true`,
"sandbox-bb"), whose ratio to `run` is the sandbox layer's cost alone.

crun (podman's default runtime) runs in the same rotation when it is
installed. It refuses cgroup v1's hybrid layout (cgroup2 mounted beside the
v1 controllers), so it alone runs in a private mount namespace where the
unified hierarchy's cgroup.controllers is an empty file: the benchmark
enters that namespace in crun's child process before its exec (setns), so
crun pays no extra exec for it. Its bundle says ociVersion 1.0.2 (crun 1.8
refuses later ones).

Prints each runtime's median, p10/p90, the ratio of medians to runc and to
crun, and the peak RSS of one run: the largest single process, as GNU
time's %M reports it (measured in separate runs launched by /usr/bin/time,
whose own ~1 MB is the floor; a launcher forked from Python would add
Python's RSS).

With --gap MS every run follows an idle pause, as a sandbox's commands do
when an agent issues them one by one: what the first move of a process
into a cgroup costs after an idle moment (an RCU grace period) shows then,
and back to back it mostly does not.

    python3 bench/lifecycle.py [--runs 200] [--sbx target/<host>/release/sbx-oci]
                               [--ref runc] [--crun crun|none] [--also NAME=PATH ...]
                               [--gap MS] [--state-on-disk]

The state roots are under /run, as in production; where /run is not a
tmpfs (this project's machine: ext4) a tmpfs is mounted over them for the
run, unless --state-on-disk.
"""
import ctypes
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import json

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def command(name, binary, root, bundle, cid):
    """The measured command: `run` of the bundle, or for "sandbox" a
    `sandbox run -- true` on the host rootfs (sbx-oci's sandbox layer), for
    "sandbox-bb" the same with the bundle's program (`busybox true`)."""
    if name == "sandbox":
        return [binary, "--root", root, "sandbox", "run", "--name", cid, "--", "true"]
    if name == "sandbox-bb":
        return [binary, "--root", root, "sandbox", "run", "--name", cid, "--", "busybox", "true"]
    if name == "crun":
        bundle = bundle + "-crun"
    return [binary, "--root", root, "run", "--bundle", bundle, cid]


# crun's private mount namespace (see the module's doc): a process that
# made it and holds it, and an open descriptor of it.
CRUN_NS = {"holder": None, "fd": None}
CLONE_NEWNS = 0x00020000


def crun_namespace():
    """Makes the namespace crun runs in, if this host needs one (the hybrid
    layout); returns a note for the output, or None."""
    unified = "/sys/fs/cgroup/unified/cgroup.controllers"
    if not os.path.exists(unified):
        return None
    script = ("mount --make-rprivate / && mount --bind /dev/null " + unified +
              " && echo ready && exec sleep 100000")
    holder = subprocess.Popen(["unshare", "-m", "sh", "-c", script],
                              stdout=subprocess.PIPE, text=True)
    if holder.stdout.readline().strip() != "ready":
        sys.exit("cannot make crun's mount namespace")
    CRUN_NS["holder"] = holder
    CRUN_NS["fd"] = os.open(f"/proc/{holder.pid}/ns/mnt", os.O_RDONLY)
    return ("note: crun runs in a private mount namespace whose "
            "/sys/fs/cgroup/unified/cgroup.controllers is empty (it refuses this "
            "hybrid cgroup layout otherwise); entered by setns before its exec")


def enter_for(name):
    """For subprocess's preexec_fn: crun's child enters its namespace."""
    if name != "crun" or CRUN_NS["fd"] is None:
        return None
    fd = CRUN_NS["fd"]
    libc = ctypes.CDLL(None, use_errno=True)

    def enter():
        if libc.setns(fd, CLONE_NEWNS) != 0:
            os._exit(127)
    return enter


# The runtimes run with a plain PATH: `sandbox run -- true` looks `true` up
# in the caller's PATH (the busybox bundle has its own), and a developer's
# shell PATH (~/.cargo/bin, pyenv shims: directories the sandbox does not
# have) would be measured as the sandbox's cost.
RUN_ENV = dict(os.environ, PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


def one_run(name, binary, root, bundle, cid):
    """Runs the command once; returns its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        command(name, binary, root, bundle, cid), preexec_fn=enter_for(name), env=RUN_ENV,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        sys.exit(f"{binary} run failed with {proc.returncode}: {err}")
    return elapsed


def peak_rss_kib(name, binary, root, bundle, cid):
    """Peak RSS (KiB) of the largest process of one run, via GNU time."""
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M"] + command(name, binary, root, bundle, cid),
        preexec_fn=enter_for(name), env=RUN_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=True)
    return int(proc.stderr.decode().strip().splitlines()[-1])


def make_bundles(work, with_crun):
    """The busybox bundle running `true` in `work`, and with_crun its copy
    for crun (BUNDLE-crun, ociVersion 1.0.2) and crun's namespace; returns
    the bundle's path."""
    bundle = os.path.join(work, "bundle")
    subprocess.run([os.path.join(REPO, "bundles/busybox.sh"), bundle], check=True,
                   stdout=subprocess.DEVNULL)
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["true"]
    cfg["process"]["terminal"] = False
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    if with_crun:
        shutil.copytree(bundle, bundle + "-crun", symlinks=True)
        cfg["ociVersion"] = "1.0.2"
        with open(os.path.join(bundle + "-crun", "config.json"), "w") as f:
            json.dump(cfg, f)
        note = crun_namespace()
        if note:
            print(note)
    return bundle


def default_sbx():
    """The release binary: target/<host tuple>/release/ (.cargo/config.toml
    sets a build target), else target/release/."""
    try:
        host = next(line.split()[1] for line in subprocess.run(
            ["rustc", "-vV"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("host:"))
        path = os.path.join(REPO, "target", host, "release", "sbx-oci")
        if os.path.exists(path):
            return path
    except (OSError, StopIteration):
        pass
    return os.path.join(REPO, "target/release/sbx-oci")


def as_installed(paths):
    """Puts every binary's pages in the page cache the same way: read back
    from disk. How a file's pages got into the cache decides the size of
    the folios they sit in, and an exec maps what is cached a folio at a
    time: lld writes its output through a mapping (single pages), cp and
    package managers through write(2) (large folios), readahead reads in
    between. Here a `run` took 482, 454 and 467 page faults for those three
    and the copy written by cp was 0.3-0.4 ms faster than the others
    (docs/performance.md, session 13): none of it the runtime's doing, and
    runc's and crun's pages came from disk."""
    for path in sorted({os.path.realpath(shutil.which(p)) for p in paths}):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # written back first: dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="runs per runtime")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--sbx", default=default_sbx())
    ap.add_argument("--ref", default=shutil.which("runc") or "runc",
                    help="reference runtime (runc)")
    ap.add_argument("--crun", default=shutil.which("crun") or "none",
                    help="crun, measured alongside when installed ('none': not)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                    help="another runtime to measure alongside")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--state-on-disk", action="store_true",
                    help="keep the state roots on /run's file system when it is not a tmpfs "
                         "(default: a tmpfs is mounted for them, as /run is in production)")
    ap.add_argument("--gap", type=float, default=0,
                    help="idle milliseconds before each run (default 0: back to back)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")

    sbx = os.path.abspath(args.sbx)
    runtimes = [("sbx-oci", sbx), ("runc", args.ref), ("sandbox", sbx), ("sandbox-bb", sbx)]
    if args.crun != "none":
        runtimes.append(("crun", args.crun))
    for extra in args.also:
        name, _, path = extra.partition("=")
        runtimes.append((name, path))
    for name, path in runtimes:
        if not shutil.which(path):
            sys.exit(f"{name}: {path} not found")
    as_installed([path for _, path in runtimes])
    print("note: every binary was read back from disk first, as an installed one is "
          "(a binary just linked takes more page faults)")

    work = tempfile.mkdtemp(prefix="sbx-bench-")
    # State roots on tmpfs, as in production (/run/sbx-oci, /run/runc).
    state = tempfile.mkdtemp(prefix="sbx-bench-", dir="/run")
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", state],
                            capture_output=True, text=True).stdout.strip()
    mounted = False
    if fstype and fstype != "tmpfs":
        if args.state_on_disk:
            print(f"note: the state roots are on {fstype}, not tmpfs (/run is not a tmpfs here)")
        else:
            # Where /run is a disk file system the runtimes' churn of state
            # files costs what production's tmpfs does not (on a journal-less
            # ext4, every new inode skips the ones deleted in the last minute:
            # docs/performance.md, session 10).
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "sbx-bench-state", state],
                           check=True)
            mounted = True
            print(f"note: the state roots are on a tmpfs mounted for this run (/run is {fstype} "
                  "here; --state-on-disk keeps them there)")
    try:
        bundle = make_bundles(work, args.crun != "none")

        times = {name: [] for name, _ in runtimes}
        rss = {name: None for name, _ in runtimes}
        total = args.warmup + args.runs
        for i in range(total):
            # Rotate the order so no runtime always runs right after another,
            # and every len(runtimes) runs reverse it, so that (for three
            # runtimes exactly) each follows each other one equally often: a
            # run right after runc's is ~0.8 ms slower on the project's
            # machine, and the plain rotation put the sandbox after runc
            # twice as often as sbx-oci's run (+0.02-0.03 on their ratio).
            n = len(runtimes)
            base = runtimes if (i // n) % 2 == 0 else runtimes[::-1]
            order = base[i % n:] + base[:i % n]
            for name, path in order:
                root = os.path.join(state, "root-" + name)
                if args.gap:
                    time.sleep(args.gap / 1000)
                secs = one_run(name, path, root, bundle, f"sbx-bench-{os.getpid()}-{i}")
                if i >= args.warmup:
                    times[name].append(secs)
        if os.path.exists("/usr/bin/time"):
            for i in range(10):
                for name, path in runtimes:
                    root = os.path.join(state, "root-" + name)
                    kib = peak_rss_kib(name, path, root, bundle, f"sbx-rss-{os.getpid()}-{i}")
                    rss[name] = max(rss[name] or 0, kib)
        else:
            print("peak RSS not measured: /usr/bin/time missing (apt-get install time)")

        ref = statistics.median(times["runc"])
        crun_med = statistics.median(times["crun"]) if "crun" in times else None
        results = {}
        print(f"{'runtime':<10} {'median':>9} {'p10':>9} {'p90':>9} {'peak RSS':>9} {'vs runc':>8}"
              + (f" {'vs crun':>8}" if crun_med else ""))
        for name, _ in runtimes:
            t = sorted(times[name])
            med = statistics.median(t)
            p10 = t[len(t) // 10]
            p90 = t[(len(t) * 9) // 10]
            mb = rss[name] / 1024 if rss[name] else None
            results[name] = {"median_ms": med * 1e3, "p10_ms": p10 * 1e3, "p90_ms": p90 * 1e3,
                             "peak_rss_mb": mb, "ratio": med / ref}
            shown = f"{mb:7.1f}MB" if mb else "    n/a  "
            vs_crun = f" {med/crun_med:7.2f}x" if crun_med else ""
            if crun_med:
                results[name]["ratio_crun"] = med / crun_med
            print(f"{name:<10} {med*1e3:8.2f}ms {p10*1e3:8.2f}ms {p90*1e3:8.2f}ms "
                  f"{shown} {med/ref:7.2f}x{vs_crun}")
        gap = f", {args.gap:g} ms idle before each" if args.gap else ""
        print(f"sbx-oci/runc median ratio: {results['sbx-oci']['ratio']:.2f} "
              f"({args.runs} alternated runs each of `run` with `true`{gap})")
        if crun_med:
            print(f"sbx-oci/crun median ratio: {results['sbx-oci']['ratio_crun']:.2f}")
        sandbox_ratio = results["sandbox"]["median_ms"] / results["sbx-oci"]["median_ms"]
        results["sandbox"]["vs_busybox_run"] = sandbox_ratio
        print(f"sandbox run -- true / sbx-oci run (busybox): {sandbox_ratio:.2f}")
        same = results["sandbox-bb"]["median_ms"] / results["sbx-oci"]["median_ms"]
        results["sandbox-bb"]["vs_busybox_run"] = same
        print(f"sandbox run -- busybox true / sbx-oci run (busybox), the same program: {same:.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        if CRUN_NS["holder"] is not None:
            CRUN_NS["holder"].kill()
            CRUN_NS["holder"].wait()
        shutil.rmtree(work, ignore_errors=True)
        if mounted:
            # The containers' mount namespaces hold copies of this mount
            # until the kernel has freed them, shortly after their last
            # process: an rmtree of a still-mounted tmpfs would leave it.
            for _ in range(50):
                if subprocess.run(["umount", state], stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.2)
            else:
                sys.exit(f"cannot unmount {state}: left in place")
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
