#!/usr/bin/env python3
"""redis-benchmark against the Sentinel port of raft-sentinel and of a real redis-sentinel,
in the same run, over the same Redis master:

    redis-benchmark -c 50 -n 200000 SENTINEL get-master-addr-by-name mymaster   (P1, P16)

Starts one redis-server, one redis-sentinel and a three-node raft-sentinel cluster on free
loopback ports, measures each target in turn (alternating, best of --rounds), prints the
requests/s and the ratio raft-sentinel / redis-sentinel per mode, and stops everything.

A ceiling column gives the rate the same redis-benchmark reaches against the redis-server
itself with PING, the cheapest command there is: no server answering over RESP can be measured
faster than that on this machine with this load generator.

Two more columns say what limits the rate: the share of one core redis-benchmark used (it is
single-threaded; near 100% means the load generator is the bottleneck and no server can go
faster), and each server's CPU time per request (median over rounds), which compares the
servers' own cost whatever the load generator manages.

Usage: tests/compat/bench_sentinel.py [--bin target/release/raft-sentinel] [--rounds 3]
Needs redis-server, redis-sentinel and redis-benchmark (Debian: redis-server redis-sentinel
redis-tools). Builds nothing: run `cargo build --release` first.
"""
import argparse, os, re, resource, shutil, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "bench"))
from loadlib import Env, cpu_seconds, master_of  # noqa: E402


QUERY = ["SENTINEL", "get-master-addr-by-name", "mymaster"]


def bench(port, pipeline, n, clients, server_pid, query=QUERY):
    """Requests/s, and the share of one core redis-benchmark itself used (it is
    single-threaded: near 100% means the load generator, not the server, is the limit)."""
    cmd = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(n), "-q"]
    if pipeline > 1:
        cmd += ["-P", str(pipeline)]
    cmd += query
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds(server_pid)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_us = (cpu_seconds(server_pid) - server_before) * 1e6 / n
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # "-q" prints e.g. "SENTINEL get-master-addr-by-name mymaster: 41841.00 requests per second, p50=..."
    m = re.findall(r"([0-9.]+) requests per second", out.replace("\r", "\n"))
    if not m:
        sys.exit(f"no rate in redis-benchmark output: {out!r}")
    return float(m[-1]), cpu / wall, server_us


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=200000)
    ap.add_argument("-c", type=int, default=50)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-sentinel", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y redis-server redis-sentinel redis-tools)")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: run cargo build --release first")
    env = Env("bench-sentinel-")
    try:
        mport, mproc = env.redis()
        # Each at its default down-after (Sentinel 30 s, raft-sentinel 5 s).
        sports, sprocs = env.sentinels(mport, n=1, down_after=30000)
        rports, rprocs, _ = env.raft(args.bin, mport, n=3, down_after=5000)
        sport, rport = sports[0], rports[0]
        want = ("127.0.0.1", mport)
        end = time.time() + 30
        while time.time() < end and (master_of(rport) != want or master_of(sport) != want):
            time.sleep(0.2)
        for name, port in (("raft-sentinel", rport), ("redis-sentinel", sport)):
            got = master_of(port)
            if got != want:
                sys.exit(f"{name} does not answer the master: {got!r}")

        print(f"redis-benchmark -c {args.c} -n {args.n} SENTINEL get-master-addr-by-name mymaster")
        print(f"{'mode':<6}{'redis-sentinel':>16}{'raft-sentinel':>16}{'ratio':>7}"
              f"{'ceiling':>10}{'bench cpu s/r':>15}{'server us/req s/r':>20}")
        spid, rpid = sprocs[0].pid, rprocs[0].pid
        for pipeline in (1, 16):
            runs = {"redis": [], "raft": [], "ping": []}
            for _ in range(args.rounds):
                runs["redis"].append(bench(sport, pipeline, args.n, args.c, spid))
                runs["raft"].append(bench(rport, pipeline, args.n, args.c, rpid))
                runs["ping"].append(bench(mport, pipeline, args.n, args.c, mproc.pid, ["PING"]))
            best = {k: max(v) for k, v in runs.items()}
            # Server CPU per request: the median over rounds (clock ticks are coarse).
            us = {k: sorted(r[2] for r in v)[len(v) // 2] for k, v in runs.items()}
            ratio = best["raft"][0] / best["redis"][0]
            cpu = f"{best['redis'][1]:.0%}/{best['raft'][1]:.0%}"
            per = f"{us['redis']:.2f}/{us['raft']:.2f}"
            print(f"{f'P{pipeline}':<6}{best['redis'][0]:>16.0f}{best['raft'][0]:>16.0f}"
                  f"{ratio:>7.2f}{best['ping'][0]:>10.0f}{cpu:>15}{per:>20}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
