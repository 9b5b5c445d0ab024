#!/usr/bin/env python3
"""Memory per client connection: RSS growth of the server per idle connection and per
slowloris connection (one that sent the first bytes of a request and waits), raft-sentinel
beside redis-sentinel in the same run.

Starts one redis-server, one redis-sentinel and a one-node raft-sentinel cluster, all
monitoring it. Against each server in turn: opens --idle connections that send nothing, waits,
reads RSS; then --slow connections that each send the first --partial bytes of a
get-master-addr-by-name request, waits, reads RSS; then closes them all. RSS is VmRSS from
/proc, so it counts what the allocator has not returned too: growth, not the live heap.

Usage: bench/client_memory.py [--no-build] [--bin target/release/raft-sentinel] [--idle 5000]
       [--slow 2000] [--partial 30] [--settle 1.5]
Loopback only; bounded by the connection counts.
"""
import argparse, os, socket, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import LOOKUP, Env, raise_nofile, release_binary, rss_kib  # noqa: E402


def measure(port, pid, a):
    time.sleep(a.settle)
    before = rss_kib(pid)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(a.idle)]
    time.sleep(a.settle)
    with_idle = rss_kib(pid)
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(a.slow)]
    for s in slow:
        s.sendall(LOOKUP[:a.partial])
    time.sleep(a.settle)
    with_slow = rss_kib(pid)
    for s in idle + slow:
        s.close()
    return before, with_idle, with_slow


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--partial", type=int, default=30)
    ap.add_argument("--settle", type=float, default=1.5)
    a = ap.parse_args()
    binary = release_binary(a.bin, not a.no_build)
    raise_nofile(a.idle + a.slow + 4096)
    env = Env("client-memory-")
    try:
        master, _, _ = env.redis_set(replicas=0)
        sports, sprocs = env.sentinels(master, n=1)
        rports, rprocs, _ = env.raft(binary, master, n=1)
        print(f"{a.idle} idle connections, then {a.slow} holding the first {a.partial} bytes of "
              f"a request; RSS growth per connection (release build: {binary})")
        print(f"{'target':<16}{'RSS KiB':>9}{'+idle KiB':>11}{'B/idle':>8}{'+slow KiB':>11}"
              f"{'B/slow':>8}")
        for name, port, pid in (("redis-sentinel", sports[0], sprocs[0].pid),
                                ("raft-sentinel", rports[0], rprocs[0].pid)):
            before, with_idle, with_slow = measure(port, pid, a)
            di, ds = with_idle - before, with_slow - with_idle
            print(f"{name:<16}{before:>9}{di:>11}{di * 1024 // max(a.idle, 1):>8}{ds:>11}"
                  f"{ds * 1024 // max(a.slow, 1):>8}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
