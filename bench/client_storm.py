#!/usr/bin/env python3
"""Benchmark b: a reconnect storm, as after every +switch-master. --clients clients (5,000)
connect at once; each sends HELLO 3, SENTINEL get-master-addr-by-name mymaster and SUBSCRIBE
+switch-master in one write, waits for the three replies and disconnects. Prints the time until
every client was served, the p50/p99 per client and the failures, raft-sentinel beside
redis-sentinel in the same run (one node of each; best of --rounds).

Usage: bench/client_storm.py [--no-build] [--bin target/release/raft-sentinel]
       [--clients 5000] [--rounds 3]
Loopback only; each round is bounded by 60 s.
"""
import argparse, asyncio, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import Env, encode, raise_nofile, release_binary  # noqa: E402

REQUEST = encode("HELLO", "3") + encode("SENTINEL", "get-master-addr-by-name", "mymaster") + \
    encode("SUBSCRIBE", "+switch-master")
# The SUBSCRIBE confirmation is the last reply (a RESP3 push frame).
DONE = b"$14\r\n+switch-master\r\n:1\r\n"


async def one(port, lat):
    t0 = time.monotonic()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        w.write(REQUEST)
        buf = b""
        while not buf.endswith(DONE):
            chunk = await r.read(65536)
            if not chunk:
                return False
            buf += chunk
        lat.append(time.monotonic() - t0)
        return True
    except OSError:
        return False
    finally:
        w.close()


async def storm(port, clients, limit=60.0):
    lat = []
    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(port, lat)) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=limit)
    for t in pending:
        t.cancel()
    wall = time.monotonic() - t0
    ok = sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: 0)
    return dict(wall=wall, ok=ok, failed=clients - ok, p50=pct(0.5), p99=pct(0.99))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    binary = release_binary(a.bin, not a.no_build)
    raise_nofile(2 * a.clients + 4096)
    env = Env("client-storm-")
    try:
        master, _, _ = env.redis_set(replicas=0)
        sports, _ = env.sentinels(master, n=1)
        rports, _, _ = env.raft(binary, master, n=3)
        targets = {"redis-sentinel": sports[0], "raft-sentinel": rports[0]}
        res = {k: [] for k in targets}
        for _ in range(a.rounds):
            for name, port in targets.items():
                res[name].append(asyncio.run(storm(port, a.clients)))
                time.sleep(1.0)  # let the sockets of the round close
        print(f"reconnect storm: {a.clients} clients at once, HELLO 3 + get-master-addr-by-name + "
              f"SUBSCRIBE +switch-master, then disconnect; best of {a.rounds} rounds (release build)")
        print(f"{'target':<16}{'all served s':>13}{'p50 ms':>8}{'p99 ms':>8}{'failed':>8}   rounds (s)")
        best = {}
        for name, rs in res.items():
            b = min(rs, key=lambda r: (r["failed"], r["wall"]))
            best[name] = b
            print(f"{name:<16}{b['wall']:>13.2f}{b['p50']:>8.0f}{b['p99']:>8.0f}{b['failed']:>8}   "
                  + " ".join(f"{r['wall']:.2f}" for r in rs))
        print(f"ratio raft/sentinel (time to serve all): "
              f"{best['raft-sentinel']['wall'] / best['redis-sentinel']['wall']:.2f}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
