#!/usr/bin/env python3
"""The 1,000-connection check on the release build: 1,000 connections each send 1 MiB of a
request but its final CRLF (so none completes), then a fresh client sends PING.

Builds the release binary (unless --no-build), starts one raft-sentinel node (default
[sentinel_port] limits) and one redis-sentinel, both monitoring one redis-server, and runs the
same load against each in turn. Prints per target: idle RSS, peak RSS during the load, the
growth, how many connections delivered the whole MiB, how many the server closed, and how
long the fresh PING took. Goal for raft-sentinel: growth <= 256 MiB, PING answered < 1 s.

Usage: bench/client_load_release.py [--no-build] [--bin target/release/raft-sentinel]
       [--conns 1000] [--target both|raft|sentinel]
Loopback only; the load is bounded (conns x 1 MiB, 60 s at most per target).
"""
import argparse, os, socket, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import Env, call, raise_nofile, release_binary, rss_kib  # noqa: E402

MIB = 1 << 20


def flood(port, pid, conns, limit_s=60):
    header = b"*2\r\n$4\r\nPING\r\n$%d\r\n" % (MIB - 26)
    body = header + b"z" * (MIB - 2 - len(header))
    assert len(body) == MIB - 2
    idle = rss_kib(pid)
    peak = idle
    socks = {}
    refused = 0
    for _ in range(conns):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            refused += 1
            s.close()
            continue
        s.setblocking(False)
        socks[s] = 0
    full, closed = 0, 0
    end = time.monotonic() + limit_s
    last_sample = 0.0
    while socks and time.monotonic() < end:
        progress = False
        for s in list(socks):
            off = socks[s]
            try:
                n = s.send(body[off:off + 262144])
            except BlockingIOError:
                continue
            except OSError:
                closed += 1
                del socks[s]
                s.close()
                continue
            progress = True
            off += n
            if off >= len(body):
                full += 1
                del socks[s]
                held.append(s)
            else:
                socks[s] = off
        now = time.monotonic()
        if now - last_sample > 0.05:
            peak = max(peak, rss_kib(pid))
            last_sample = now
        if not progress:
            time.sleep(0.01)
    stuck = len(socks)
    for _ in range(20):
        time.sleep(0.05)
        peak = max(peak, rss_kib(pid))
    # Connections the server closed show as readable with EOF or as reset.
    for s in list(held):
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = c.recv(64)
    except OSError as e:
        reply = repr(e).encode()
    ping_ms = (time.monotonic() - t0) * 1000
    # The limits that refused or closed connections (raft-sentinel's INFO stats).
    try:
        info = call(port, "INFO", "stats")
    except OSError:
        info = ""
    if not isinstance(info, str):  # an error reply
        info = ""
    limits = " ".join(line.strip() for line in info.splitlines()
                      if line.startswith("limit_") and not line.strip().endswith(":0"))
    for s in list(socks) + held:
        s.close()
    held.clear()
    return dict(idle=idle // 1024, peak=peak // 1024, growth=(peak - idle) // 1024, full=full,
                closed=closed, refused=refused, stuck=stuck, ping_ms=ping_ms,
                reply=reply.strip().decode(errors="replace"), limits=limits)


held = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--target", default="both", choices=["both", "raft", "sentinel"])
    a = ap.parse_args()
    binary = release_binary(a.bin, not a.no_build)
    raise_nofile(a.conns + 4096)
    env = Env("client-load-release-")
    try:
        master, _, _ = env.redis_set(replicas=0)
        results = {}
        if a.target in ("both", "raft"):
            ports, procs, _ = env.raft(binary, master, n=1)
            results["raft-sentinel"] = flood(ports[0], procs[0].pid, a.conns)
        if a.target in ("both", "sentinel"):
            ports, procs = env.sentinels(master, n=1)
            time.sleep(0.5)
            results["redis-sentinel"] = flood(ports[0], procs[0].pid, a.conns)
        print(f"{a.conns} connections x 1 MiB unfinished request (release build: {binary})")
        print(f"{'target':<16}{'idle MiB':>9}{'peak MiB':>9}{'growth':>8}{'whole MiB':>10}"
              f"{'closed':>8}{'refused':>8}{'fresh PING':>12}  reply")
        for name, r in results.items():
            print(f"{name:<16}{r['idle']:>9}{r['peak']:>9}{r['growth']:>8}{r['full']:>10}"
                  f"{r['closed']:>8}{r['refused']:>8}{r['ping_ms']:>10.1f}ms  {r['reply']}")
            if r["limits"]:
                print(f"{'':<16}counted: {r['limits']}")
        r = results.get("raft-sentinel")
        if r:
            ok = r["growth"] <= 256 and r["ping_ms"] < 1000 and r["reply"] == "+PONG"
            print(f"raft-sentinel goal (growth <= 256 MiB, PING < 1 s): {'met' if ok else 'NOT met'}")
            if not ok:
                sys.exit(1)
    finally:
        for s in held:
            s.close()
        env.close()


if __name__ == "__main__":
    main()
