#!/usr/bin/env python3
"""The invalidation delay between two kvfs daemons on one etcd store (issue 25).

Starts a 3-member etcd cluster on loopback (private temporary directory, ports picked free),
mounts a writer and a read-only follower (`-o ro`, default one-hour kernel caches) of the same
store, each with its own data directory as on two hosts, and repeats: the follower stats a file
(so its kernel caches the size), the writer rewrites the file with a new size and closes it, and
the follower polls stat(2) until it shows the new size. The delay is from the writer's close
returning to the follower's first stat showing the new size. The same for a name: the follower
looks up a name in vain (a cached negative entry), the writer creates it, the follower polls
until it appears.

Needs root (FUSE mounts), etcd and a built kvfs. Not a test: it prints p50, p99 and max.

  sudo tests/bench/follower_delay.py --kvfs build/rel/fusefs/kvfs --rounds 300
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(root, members=3):
    ports = [(free_port(), free_port()) for _ in range(members)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    procs = []
    for i, (client, peer) in enumerate(ports):
        log = open(os.path.join(root, f"m{i}.log"), "w")
        procs.append(subprocess.Popen(
            ["etcd", "--name", f"m{i}", "--data-dir", os.path.join(root, f"m{i}"),
             "--listen-client-urls", f"http://127.0.0.1:{client}",
             "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", "follower-delay", "--max-txn-ops", "10000",
             "--max-request-bytes", "10485760"],
            stdout=log, stderr=subprocess.STDOUT))
    endpoints = [f"http://127.0.0.1:{c}" for c, _ in ports]
    deadline = time.monotonic() + 60
    for e in endpoints:
        while True:
            try:
                with urllib.request.urlopen(e + "/health", timeout=2) as r:
                    if b'"true"' in r.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"etcd member {e} not healthy within 60 s")
            time.sleep(0.1)  # polling a starting process
    return procs, ",".join(endpoints)


def mount(kvfs, root, name, endpoints, options):
    d = os.path.join(root, name)
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    os.makedirs(os.path.join(d, "data"), mode=0o700)
    conf = os.path.join(d, "kvfs.toml")
    with open(conf, "w") as f:
        f.write(f'[[store]]\nname = "e"\nengine = "etcd"\ndata_dir = "{d}/data/e"\n'
                f'[store.options]\nendpoints = "{endpoints}"\nprefix = "bench/"\n')
    args = [kvfs, "mount", mnt, "--config", conf]
    if options:
        args += ["-o", options]
    subprocess.run(args, check=True)  # returns once the mount is live
    return mnt


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(what, delays):
    ms = [d * 1000 for d in delays]
    print(f"{what}: n={len(ms)} p50={percentile(ms, 50):.2f} ms p99={percentile(ms, 99):.2f} ms "
          f"max={max(ms):.2f} ms mean={statistics.mean(ms):.2f} ms")


def wait_for(cond, deadline_s=10.0):
    start = time.perf_counter()
    while not cond():
        if time.perf_counter() - start > deadline_s:
            raise SystemExit("the follower did not see the change within 10 s")
    return time.perf_counter()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvfs", default="build/rel/fusefs/kvfs")
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    kvfs = os.path.abspath(a.kvfs)
    root = tempfile.mkdtemp(prefix="kvfs-follower-delay-")
    procs = []
    mounts = []
    try:
        procs, endpoints = start_cluster(root)
        w = mount(kvfs, root, "writer", endpoints, "")
        mounts.append(w)
        f = mount(kvfs, root, "follower", endpoints, "ro")
        mounts.append(f)
        wf, ff = os.path.join(w, "e", "file"), os.path.join(f, "e", "file")
        with open(wf, "wb") as out:
            out.write(b"x")
        wait_for(lambda: os.path.exists(ff))
        data, names = [], []
        for i in range(a.rounds):
            size = 2 + i  # a new size each round (inline: one node record)
            os.stat(ff)  # cached by the follower's kernel (attributes for an hour)
            with open(wf, "wb") as out:
                out.write(b"y" * size)
            t0 = time.perf_counter()
            t1 = wait_for(lambda: os.stat(ff).st_size == size)
            data.append(t1 - t0)
            name = f"n{i}"
            assert not os.path.exists(os.path.join(f, "e", name))  # a cached negative entry
            with open(os.path.join(w, "e", name), "wb"):
                pass
            t0 = time.perf_counter()
            t1 = wait_for(lambda: os.path.exists(os.path.join(f, "e", name)))
            names.append(t1 - t0)
        print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; "
              f"3-member etcd on loopback; {a.rounds} rounds")
        report("write+close -> follower stat sees the new size", data)
        report("create -> follower finds the name it had found absent", names)
    finally:
        for m in reversed(mounts):
            subprocess.run([kvfs, "umount", m], check=False)
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
