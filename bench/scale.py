#!/usr/bin/env python3
"""Scale benchmark: sbx-oci beside runc and crun under load.

1. Parallel `run`s: N = 1, 2, 8, 32 concurrent `RUNTIME run` of `true` on the
   busybox bundle, each runtime in turn for the same number of rounds;
   prints containers per second and the ratio to runc and crun.
2. `list` with 1,000 containers in the state root (stopped ones, left by
   `run -d` of `true`): median time of `list` per runtime.
3. `sandbox run -- true` with 1,000 allowlist entries (addresses of a
   private range nobody answers; `true` sends nothing) against one entry.

crun runs in the private mount namespace bench/lifecycle.py makes for it
on a hybrid cgroup host. Nothing leaves the machine: no container here
touches the network, and the allowlist's sandboxes only get their rules.

    python3 bench/scale.py [--sbx PATH] [--ref runc] [--crun crun|none]
                           [--rounds 8] [--containers 1000] [--entries 1000]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle  # noqa: E402  (the crun namespace, the default binary)

REPO = lifecycle.REPO


def spawn(name, binary, args):
    return subprocess.Popen([binary] + args, preexec_fn=lifecycle.enter_for(name),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def check(proc, what):
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{what} failed with {proc.returncode}: {err.decode(errors='replace').strip()}")


def run_args(name, root, bundle, cid, detach=False):
    if name == "crun":
        bundle = bundle + "-crun"
    return ["--root", root, "run"] + (["-d"] if detach else []) + ["--bundle", bundle, cid]


def parallel(runtimes, state, bundle, rounds):
    """Containers per second of N concurrent runs, for each N."""
    print(f"\n1. parallel `run` of `true` ({rounds} rounds of N per runtime, rotated)")
    print(f"{'N':>3} " + " ".join(f"{name:>12}" for name, _ in runtimes)
          + "   (containers/s; sbx-oci vs runc, vs crun)")
    results = {}
    for n in (1, 2, 8, 32):
        spent = {name: 0.0 for name, _ in runtimes}
        for r in range(rounds):
            order = runtimes[r % len(runtimes):] + runtimes[:r % len(runtimes)]
            for name, binary in order:
                root = os.path.join(state, "par-" + name)
                start = time.perf_counter()
                procs = [spawn(name, binary, run_args(name, root, bundle, f"p{os.getpid()}-{n}-{r}-{i}"))
                         for i in range(n)]
                for p in procs:
                    check(p, f"{name} run")
                spent[name] += time.perf_counter() - start
        rate = {name: n * rounds / spent[name] for name in spent}
        results[n] = rate
        ratios = f"   {rate['sbx-oci'] / rate['runc']:.2f}x"
        if "crun" in rate:
            ratios += f", {rate['sbx-oci'] / rate['crun']:.2f}x"
        print(f"{n:>3} " + " ".join(f"{rate[name]:>12.1f}" for name, _ in runtimes) + ratios)
    return results


def listing(runtimes, state, bundle, count):
    """Median time of `list` with `count` stopped containers."""
    print(f"\n2. `list` with {count} containers in the state root (median of 20)")
    results = {}
    for name, binary in runtimes:
        root = os.path.join(state, "list-" + name)
        ids = [f"l{os.getpid()}-{i}" for i in range(count)]
        made = time.perf_counter()
        for batch in range(0, count, 16):
            procs = [spawn(name, binary, run_args(name, root, bundle, cid, detach=True))
                     for cid in ids[batch:batch + 16]]
            for p in procs:
                check(p, f"{name} run -d")
        made = time.perf_counter() - made
        times = []
        for _ in range(20):
            start = time.perf_counter()
            proc = subprocess.run([binary, "--root", root, "list", "-q"],
                                  preexec_fn=lifecycle.enter_for(name),
                                  capture_output=True, check=True)
            times.append(time.perf_counter() - start)
            listed = len(proc.stdout.split())
            if listed != count:
                sys.exit(f"{name} list showed {listed} containers, not {count}")
        for batch in range(0, count, 16):
            procs = [spawn(name, binary, ["--root", root, "delete", "--force", cid])
                     for cid in ids[batch:batch + 16]]
            for p in procs:
                check(p, f"{name} delete")
        results[name] = statistics.median(times) * 1e3
        print(f"{name:<8} {results[name]:8.2f} ms   ({count} made in {made:.1f} s)")
    return results


def allowlist(sbx, state, entries, runs):
    """`sandbox run -- true` with many allowlist entries against one."""
    print(f"\n3. `sandbox run -- true` with {entries} allowlist entries (median of {runs}, alternated)")
    many = []
    for i in range(entries):
        many += ["--allow", f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}:443"]
    variants = {"1 entry": ["--allow", "10.200.0.1:443"], f"{entries} entries": many}
    times = {v: [] for v in variants}
    root = os.path.join(state, "allow")
    for i in range(runs + 2):
        for v, flags in variants.items():
            start = time.perf_counter()
            proc = subprocess.run([sbx, "--root", root, "sandbox", "run"] + flags + ["--", "true"],
                                  stdin=subprocess.DEVNULL, capture_output=True)
            secs = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"sandbox run ({v}) failed: {proc.stderr.decode(errors='replace')}")
            if i >= 2:
                times[v].append(secs)
    med = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    for v in variants:
        print(f"{v:<14} {med[v]:8.2f} ms")
    one, lots = med["1 entry"], med[f"{entries} entries"]
    print(f"{entries} entries / 1 entry: {lots / one:.2f}x")
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sbx", default=lifecycle.default_sbx())
    ap.add_argument("--ref", default=shutil.which("runc") or "runc")
    ap.add_argument("--crun", default=shutil.which("crun") or "none")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    sbx = os.path.abspath(args.sbx)
    runtimes = [("sbx-oci", sbx), ("runc", args.ref)]
    if args.crun != "none":
        runtimes.append(("crun", args.crun))
    # Every binary's pages cached alike: read back from disk (see lifecycle).
    lifecycle.as_installed([path for _, path in runtimes])
    work = tempfile.mkdtemp(prefix="sbx-scale-")
    state = tempfile.mkdtemp(prefix="sbx-scale-", dir="/run")
    try:
        bundle = lifecycle.make_bundles(work, args.crun != "none")
        results = {
            "parallel_runs_per_s": parallel(runtimes, state, bundle, args.rounds),
            "list_ms": listing(runtimes, state, bundle, args.containers),
            "allowlist_ms": allowlist(sbx, state, args.entries, 20),
        }
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        holder = lifecycle.CRUN_NS["holder"]
        if holder is not None:
            holder.kill()
            holder.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
