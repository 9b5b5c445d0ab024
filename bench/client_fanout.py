#!/usr/bin/env python3
"""Benchmark c: event fan-out. --subs subscribers (5,000), each on its own connection to one
node, SUBSCRIBE +switch-master; a forced failover (SENTINEL FAILOVER mymaster) switches the
master. Prints the time from the first subscriber having +switch-master (the switch is
published: committed, for raft-sentinel) until the last one has it, and how many got it,
raft-sentinel beside redis-sentinel in the same run (each with its own master and replica).

Usage: bench/client_fanout.py [--no-build] [--bin target/release/raft-sentinel]
       [--subs 5000] [--rounds 3]
Loopback only; each round is bounded by 60 s.
"""
import argparse, asyncio, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import Env, call, encode, master_of, raise_nofile, release_binary  # noqa: E402

CONFIRM = b"$14\r\n+switch-master\r\n:1\r\n"


async def subscribe(port, ready, got, stop):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(encode("SUBSCRIBE", "+switch-master"))
        buf = b""
        while not buf.endswith(CONFIRM):
            chunk = await r.read(4096)
            if not chunk:
                return
            buf += chunk
        ready.append(1)
        buf = b""
        while b"message" not in buf:
            chunk = await asyncio.wait_for(r.read(4096), timeout=max(0.01, stop - time.monotonic()))
            if not chunk:
                return
            buf += chunk
        got.append(time.monotonic())
    except (asyncio.TimeoutError, OSError):
        pass
    finally:
        w.close()


async def fanout(port, subs, limit=60.0):
    ready, got = [], []
    stop = time.monotonic() + limit
    tasks = []
    for i in range(subs):
        tasks.append(asyncio.create_task(subscribe(port, ready, got, stop)))
        if i % 500 == 499:
            await asyncio.sleep(0.05)  # connect in waves: this measures fan-out, not accept
    while len(ready) < subs and time.monotonic() < stop:
        await asyncio.sleep(0.05)
    if len(ready) < subs:
        sys.exit(f"only {len(ready)} of {subs} subscribed on port {port}")
    before = master_of(port)
    t_cmd = time.monotonic()
    await asyncio.to_thread(call, port, "SENTINEL", "FAILOVER", "mymaster")
    await asyncio.wait(tasks, timeout=max(0.1, stop - time.monotonic()))
    for t in tasks:
        t.cancel()
    if not got:
        sys.exit(f"no subscriber got +switch-master on port {port} (master {before})")
    return dict(spread=(max(got) - min(got)) * 1000, first=(min(got) - t_cmd) * 1000,
                got=len(got))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--subs", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    binary = release_binary(a.bin, not a.no_build)
    raise_nofile(2 * a.subs + 4096)
    env = Env("client-fanout-")
    try:
        sm, _, _ = env.redis_set(replicas=1)
        rm, _, _ = env.redis_set(replicas=1)
        sports, _ = env.sentinels(sm, n=1, extra="sentinel failover-timeout mymaster 3000\n")
        rports, _, _ = env.raft(binary, rm, n=3)
        targets = {"redis-sentinel": sports[0], "raft-sentinel": rports[0]}
        res = {k: [] for k in targets}
        for _ in range(a.rounds):
            for name, port in targets.items():
                # The previous failover's replica must be back and known before the next one.
                end = time.time() + 30
                while time.time() < end:
                    r = str(call(port, "SENTINEL", "REPLICAS", "mymaster"))
                    if "master_link_status" in r and "ok" in r and "s_down" not in r:
                        break
                    time.sleep(0.2)
                time.sleep(2.0 if name == "raft-sentinel" else 7.0)
                res[name].append(asyncio.run(fanout(port, a.subs)))
        print(f"event fan-out: {a.subs} subscribers of +switch-master on one node, forced failover; "
              f"median of {a.rounds} rounds (release build)")
        print(f"{'target':<16}{'first->last ms':>15}{'got it':>8}{'cmd->first ms':>15}   rounds (ms)")
        med = {}
        for name, rs in res.items():
            rs_sorted = sorted(rs, key=lambda r: r["spread"])
            m = rs_sorted[len(rs_sorted) // 2]
            med[name] = m
            print(f"{name:<16}{m['spread']:>15.0f}{min(r['got'] for r in rs):>8}{m['first']:>15.0f}   "
                  + " ".join(f"{r['spread']:.0f}" for r in rs))
        print(f"ratio raft/sentinel (first->last): "
              f"{med['raft-sentinel']['spread'] / max(med['redis-sentinel']['spread'], 0.001):.2f}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
