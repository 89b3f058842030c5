#!/usr/bin/env python3
"""Client benchmark: `podman run --rm` and `ctr run --rm` of `true` on a local
busybox image, with sbx-oci and with runc as the runtime, alternated run by run
so both see the same machine. Prints each median, p10/p90 and the ratio of
medians per client. Not run by CI (needs root, podman, containerd, runc).

    python3 bench/clients.py [--runs 20] [--sbx target/<host>/release/sbx-oci] [--ref runc]

podman runs with a private containers.conf/storage and `--network none`;
containerd is a private daemon (root, state, sockets in a temp dir, CRI off)
with the runc v2 shim and `--runc-binary`. Everything is removed at the end.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
IMG = "localhost/busybox:latest"
PKGS = ["podman", "conmon", "catatonit", "containerd", "runc", "busybox-static"]


def sh(*args, **kw):
    return subprocess.run(list(args), stdin=subprocess.DEVNULL, **kw)


def ensure_packages():
    if sh("dpkg", "-s", *PKGS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh("apt-get", "update", "-q", check=True, env=env)
        sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *PKGS, check=True, env=env)


def oci_archive(rootfs_tar, work, out):
    """An OCI image layout (one uncompressed layer) for `ctr image import`."""
    oci = os.path.join(work, "oci")
    os.makedirs(os.path.join(oci, "blobs", "sha256"))

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(oci, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    with open(rootfs_tar, "rb") as f:
        layer = blob(f.read())
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = blob(json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(layer, mediaType="application/vnd.oci.image.layer.v1.tar")]}).encode())
    index = {"schemaVersion": 2, "manifests": [dict(
        manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"io.containerd.image.name": IMG,
                     "org.opencontainers.image.ref.name": "latest"})]}
    with open(os.path.join(oci, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(oci, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    sh("tar", "-C", oci, "-cf", out, ".", check=True)


class Setup:
    """Private podman and containerd; remembers what existed to undo only its own."""

    def __init__(self, work):
        self.work = work
        self.daemon = None
        self.had = {p: os.path.exists(p) for p in
                    ["/run/netns", "/run/containers", "/run/containerd", "/var/lib/containers"]}
        self.had_cg = set(glob.glob("/sys/fs/cgroup/*/libpod_parent") +
                          glob.glob("/sys/fs/cgroup/*/default"))
        w = work
        os.makedirs(f"{w}/networks")
        with open(f"{w}/containers.conf", "w") as f:
            f.write(f'[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                    f'events_logfile_path = "{w}/events.log"\n'
                    f'[network]\nnetwork_config_dir = "{w}/networks"\n')
        with open(f"{w}/storage.conf", "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{w}/graph"\nrunroot = "{w}/run"\n')
        os.environ["CONTAINERS_CONF"] = f"{w}/containers.conf"
        os.environ["CONTAINERS_STORAGE_CONF"] = f"{w}/storage.conf"
        self.sock = f"{w}/containerd.sock"
        os.makedirs(f"{w}/opt")
        with open(f"{w}/config.toml", "w") as f:
            f.write(f'version = 2\nroot = "{w}/root"\nstate = "{w}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    f'[debug]\n  address = "{w}/debug.sock"\n'
                    f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{w}/opt"\n')

    def podman(self, runtime):
        return ["podman", "--runtime", runtime, "--tmpdir", f"{self.work}/libpod",
                "--volumepath", f"{self.work}/vol"]

    def ctr(self):
        return ["ctr", "-a", self.sock]

    def start(self, runtime):
        bb = f"{self.work}/bb"
        sh(os.path.join(REPO, "bundles/busybox.sh"), bb, check=True, stdout=subprocess.DEVNULL)
        tar = f"{self.work}/rootfs.tar"
        sh("tar", "-C", f"{bb}/rootfs", "-cf", tar, ".", check=True)
        sh(*self.podman(runtime), "import", tar, IMG, check=True,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log = open(f"{self.work}/containerd.log", "w")
        self.daemon = subprocess.Popen(["containerd", "--config", f"{self.work}/config.toml"],
                                       stdin=subprocess.DEVNULL, stdout=self.log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(100):
            if sh(*self.ctr(), "version", stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        archive = f"{self.work}/busybox-oci.tar"
        oci_archive(tar, self.work, archive)
        sh(*self.ctr(), "image", "import", archive, check=True, stdout=subprocess.DEVNULL)

    def cleanup(self, runtime):
        w = self.work
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        sh("timeout", "60", *self.podman(runtime), "rm", "-af", "-t", "0", **quiet)
        if self.daemon:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.log.close()
        # Leftover conmon/shim processes name the work dir; end them by pid.
        for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(cmdline, "rb") as f:
                    if w.encode() in f.read():
                        os.kill(int(cmdline.split("/")[2]), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        mounts = [line.split()[1] for line in open("/proc/self/mounts")]
        for m in sorted((m for m in mounts if m.startswith(w) or
                         (not self.had["/run/containerd"] and m.startswith("/run/containerd"))),
                        reverse=True):
            sh("umount", "-l", m, **quiet)
        if (not self.had["/run/netns"] and os.path.isdir("/run/netns")
                and not os.listdir("/run/netns")):
            while sh("findmnt", "-rn", "/run/netns", **quiet).returncode == 0:
                if sh("umount", "-l", "/run/netns", **quiet).returncode:
                    break
            os.rmdir("/run/netns")
        for p in ["/run/containers", "/run/containerd", "/var/lib/containers"]:
            if not self.had[p]:
                shutil.rmtree(p, ignore_errors=True)
        for d in glob.glob("/sys/fs/cgroup/*/libpod_parent") + glob.glob("/sys/fs/cgroup/*/default"):
            if d not in self.had_cg:
                for root, dirs, _ in sorted(os.walk(d), key=lambda x: -len(x[0])):
                    try:
                        os.rmdir(root)
                    except OSError:
                        pass
        shutil.rmtree(w, ignore_errors=True)


def timed(cmd):
    start = time.perf_counter()
    proc = sh(*cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with {proc.returncode}: "
                 f"{proc.stderr.decode(errors='replace').strip()}")
    return elapsed


def default_sbx():
    """The release build: target/<host tuple>/release/sbx-oci
    (.cargo/config.toml sets the build target)."""
    host = next(line.split()[1] for line in subprocess.run(
        ["rustc", "-vV"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("host:"))
    return os.path.join(REPO, "target", host, "release", "sbx-oci")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per client and runtime")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sbx", default=default_sbx())
    ap.add_argument("--ref", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    ensure_packages()
    runtimes = [("sbx-oci", os.path.abspath(args.sbx)),
                ("runc", os.path.abspath(shutil.which(args.ref) or args.ref))]
    for name, path in runtimes:
        if not os.access(path, os.X_OK):
            sys.exit(f"{name}: {path} not found")

    setup = Setup(tempfile.mkdtemp(prefix="sbx-bench-clients-"))
    try:
        setup.start(runtimes[0][1])
        clients = {
            "podman": lambda rt, i: [*setup.podman(rt), "run", "--rm", "--network", "none",
                                     IMG, "true"],
            "ctr": lambda rt, i: [*setup.ctr(), "run", "--rm", "--runtime",
                                  "io.containerd.runc.v2", "--runc-binary", rt, IMG,
                                  f"bench-{i}", "true"],
        }
        times = {(c, n): [] for c in clients for n, _ in runtimes}
        for i in range(args.warmup + args.runs):
            for client, cmd in clients.items():
                order = runtimes if i % 2 == 0 else runtimes[::-1]
                for name, path in order:
                    secs = timed(cmd(path, i))
                    if i >= args.warmup:
                        times[(client, name)].append(secs)
        results = {}
        print(f"{'client':<7} {'runtime':<8} {'median':>9} {'p10':>9} {'p90':>9} {'vs runc':>8}")
        for client in clients:
            ref = statistics.median(times[(client, "runc")])
            for name, _ in runtimes:
                t = sorted(times[(client, name)])
                med = statistics.median(t)
                p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10]
                results[f"{client}/{name}"] = {"median_ms": med * 1e3, "p10_ms": p10 * 1e3,
                                               "p90_ms": p90 * 1e3, "ratio": med / ref}
                print(f"{client:<7} {name:<8} {med*1e3:8.1f}ms {p10*1e3:8.1f}ms "
                      f"{p90*1e3:8.1f}ms {med/ref:7.2f}x")
        for client in clients:
            print(f"{client}: sbx-oci/runc median ratio "
                  f"{results[f'{client}/sbx-oci']['ratio']:.2f} "
                  f"({args.runs} alternated runs each of `run --rm ... true`)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        setup.cleanup(runtimes[0][1])


if __name__ == "__main__":
    main()
