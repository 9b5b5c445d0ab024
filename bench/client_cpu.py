#!/usr/bin/env python3
"""Benchmark d: server CPU per `SENTINEL get-master-addr-by-name` at pipeline depth 1 and 16,
raft-sentinel beside redis-sentinel in the same run, from /proc (user + system time of the
server process divided by the requests served).

The load generator (redis-benchmark, single-threaded) saturates one of the machine's cores
before either server does, so requests/s compare the load generator more than the servers;
CPU per request compares the servers. Goal: raft-sentinel <= 0.67x Sentinel at P16, <= 1.0x
at P1.

Starts one redis-server, one redis-sentinel and a three-node raft-sentinel cluster (the load
goes to node 1), alternates the targets for --rounds rounds and prints the median per target.
Pipelined runs send -n times the depth in requests: /proc counts CPU in 10 ms ticks, which
would otherwise be 5-10% of the few hundred ms a pipelined run costs the server.

Usage: bench/client_cpu.py [--no-build] [--bin target/release/raft-sentinel] [--rounds 5]
       [-n 200000] [-c 50]
"""
import argparse, os, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import Env, cpu_seconds, release_binary  # noqa: E402

QUERY = ["SENTINEL", "get-master-addr-by-name", "mymaster"]


def run(port, pid, pipeline, n, clients):
    """Server CPU microseconds per request, and requests/s."""
    cmd = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(n), "-q"]
    if pipeline > 1:
        cmd += ["-P", str(pipeline)]
    before = cpu_seconds(pid)
    out = subprocess.run(cmd + QUERY, capture_output=True, text=True, timeout=300).stdout
    used = cpu_seconds(pid) - before
    rate = 0.0
    for tok in out.replace("\r", "\n").split("\n"):
        if "requests per second" in tok:
            rate = float(tok.split(":")[-1].split("requests")[0].strip())
    return used * 1e6 / n, rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=200000)
    ap.add_argument("-c", type=int, default=50)
    a = ap.parse_args()
    binary = release_binary(a.bin, not a.no_build)
    env = Env("client-cpu-")
    try:
        master, _, _ = env.redis_set(replicas=0)
        sports, sprocs = env.sentinels(master, n=1)
        rports, rprocs, _ = env.raft(binary, master, n=3)
        targets = {"redis-sentinel": (sports[0], sprocs[0].pid),
                   "raft-sentinel": (rports[0], rprocs[0].pid)}
        print(f"redis-benchmark -c {a.c} -n {a.n} (x depth when pipelined) {' '.join(QUERY)}; "
              f"median of {a.rounds} rounds; server CPU from /proc (release build)")
        print(f"{'mode':<6}{'sentinel us/req':>16}{'raft us/req':>13}{'ratio':>7}{'goal':>7}"
              f"{'sentinel req/s':>16}{'raft req/s':>12}")
        for pipeline, goal in ((1, 1.0), (16, 0.67)):
            res = {k: [] for k in targets}
            for _ in range(a.rounds):
                for name, (port, pid) in targets.items():
                    res[name].append(run(port, pid, pipeline, a.n * pipeline, a.c))
            us = {k: statistics.median(r[0] for r in v) for k, v in res.items()}
            rate = {k: statistics.median(r[1] for r in v) for k, v in res.items()}
            ratio = us["raft-sentinel"] / us["redis-sentinel"]
            print(f"{f'P{pipeline}':<6}{us['redis-sentinel']:>16.2f}{us['raft-sentinel']:>13.2f}"
                  f"{ratio:>7.2f}{goal:>7.2f}{rate['redis-sentinel']:>16.0f}"
                  f"{rate['raft-sentinel']:>12.0f}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
