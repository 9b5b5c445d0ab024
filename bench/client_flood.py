#!/usr/bin/env python3
"""Benchmark a: a failover during a client flood. Node 1 (raft-sentinel) or Sentinel 1
(redis-sentinel) of a three-member set gets --idle idle connections (5,000), --slow slowloris
connections (2,000, one byte of a request each every 0.5 s, reconnecting when closed) and
--pipe clients pipelining get-master-addr-by-name 16 deep (200, redis-benchmark); after
--warmup seconds the master is killed (SIGKILL). The failover time is from the kill until node
1 answers the replica's address (a fresh connection every 20 ms). The same run without load
is the baseline. Also printed: peak RSS of the loaded process against its RSS before the load,
and for raft-sentinel the p99 commit latency of the proposals made meanwhile (all nodes, from
raft_sentinel_proposal_duration_seconds; the bucket's upper bound) and the share of 100 ms
samples in which node 1 had no leader contact (heartbeats missed for a whole lease).

Each run starts a fresh set: a master, two replicas, three nodes of each target, down-after
1000 ms. Goal for raft-sentinel: failover time under load within +10% of the unloaded run,
RSS flat.

Usage: bench/client_flood.py [--no-build] [--bin target/release/raft-sentinel] [--runs 3]
       [--idle 5000] [--slow 2000] [--pipe 200] [--warmup 3] [--target both|raft|sentinel]
Loopback only; every load loop stops with its run, each run is bounded by 60 s.
"""
import argparse, os, re, signal, socket, statistics, subprocess, sys, threading, time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import (Env, LOOKUP, master_of, raise_nofile, release_binary,  # noqa: E402
                     rss_kib)


class Load:
    """Idle, slowloris and pipelining clients against one port, until stop()."""

    def __init__(self, port, idle, slow, pipe):
        self.port, self.stop_ev = port, threading.Event()
        self.idle = []
        for _ in range(idle):
            try:
                self.idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                pass
        self.slow_n = slow
        self.reconnects = 0
        self.thread = threading.Thread(target=self._slowloris, daemon=True)
        self.thread.start()
        self.bench = subprocess.Popen(
            ["redis-benchmark", "-p", str(port), "-c", str(pipe), "-P", "16", "-n", "200000000",
             "-q", "SENTINEL", "get-master-addr-by-name", "mymaster"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _connect(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            s.setblocking(False)
            return [s, 0]
        except OSError:
            return None

    def _slowloris(self):
        socks = [c for c in (self._connect() for _ in range(self.slow_n)) if c]
        while not self.stop_ev.wait(0.5):
            for i, c in enumerate(socks):
                if c is None:
                    continue
                try:
                    c[0].send(LOOKUP[c[1] % (len(LOOKUP) - 1):c[1] % (len(LOOKUP) - 1) + 1])
                    c[1] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    c[0].close()
                    socks[i] = self._connect()
                    self.reconnects += 1
        for c in socks:
            if c:
                c[0].close()

    def stop(self):
        self.stop_ev.set()
        self.bench.send_signal(signal.SIGKILL)
        self.bench.wait()
        self.thread.join(timeout=10)
        for s in self.idle:
            s.close()


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return r.read().decode()
    except OSError:
        return ""


def buckets(text):
    out = {}
    for m in re.finditer(r'^raft_sentinel_proposal_duration_seconds_bucket\{le="([^"]+)"\} (\S+)',
                         text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def p99(before, after):
    """The upper bound of the bucket holding the 99th percentile of the proposals between
    two sets of scrapes (summed over nodes); None when there were none."""
    names = {le for a in after for le in a}
    les = sorted((k for k in names if k != "+Inf"), key=float) + ["+Inf"]
    delta = [sum(a.get(le, 0) for a in after) - sum(b.get(le, 0) for b in before) for le in les]
    total = delta[-1]
    if total <= 0:
        return None, 0
    for le, cum in zip(les, delta):
        if cum >= 0.99 * total:
            return le, int(total)
    return "+Inf", int(total)


def one_run(binary, target, loaded, a):
    env = Env("client-flood-")
    try:
        master, mproc, replicas = env.redis_set(replicas=2)
        replica_ports = {p for p, _ in replicas}
        metrics = []
        if target == "raft-sentinel":
            ports, procs, metrics = env.raft(binary, master, n=3, down_after=1000)
        else:
            ports, procs = env.sentinels(master, n=3, down_after=1000)
            end = time.time() + 20
            while time.time() < end and not all(master_of(p) for p in ports):
                time.sleep(0.1)
            time.sleep(2.0)  # Sentinels discover each other and the replicas by hello
        port, pid = ports[0], procs[0].pid
        rss_before = rss_kib(pid)
        before = [buckets(scrape(m)) for m in metrics]
        load = Load(port, a.idle, a.slow, a.pipe) if loaded else None
        peak, samples, no_contact = rss_before, 0, 0
        try:
            end = time.time() + a.warmup
            while time.time() < end:
                peak = max(peak, rss_kib(pid))
                time.sleep(0.1)
            mproc.signal(signal.SIGKILL)
            t0 = time.monotonic()
            took = None
            last_sample = 0.0
            while time.monotonic() - t0 < 60:
                m = master_of(port)
                if m and m[1] in replica_ports:
                    took = time.monotonic() - t0
                    break
                now = time.monotonic()
                if now - last_sample >= 0.1:
                    last_sample = now
                    peak = max(peak, rss_kib(pid))
                    if metrics:
                        samples += 1
                        if "raft_sentinel_raft_leader_contact 0" in scrape(metrics[0]):
                            no_contact += 1
                time.sleep(0.02)
            peak = max(peak, rss_kib(pid))
        finally:
            if load:
                load.stop()
        after = [buckets(scrape(m)) for m in metrics]
        commit_p99, proposals = p99(before, after) if metrics else (None, 0)
        return dict(took=took, rss_before=rss_before // 1024, peak=peak // 1024,
                    commit_p99=commit_p99, proposals=proposals,
                    no_contact=(no_contact / samples) if samples else None,
                    reconnects=load.reconnects if load else 0, idle=len(load.idle) if load else 0)
    finally:
        env.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--pipe", type=int, default=200)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--target", default="both", choices=["both", "raft", "sentinel"])
    a = ap.parse_args()
    binary = release_binary(a.bin, not a.no_build)
    raise_nofile(a.idle + a.slow + a.pipe + 8192)
    targets = {"both": ["redis-sentinel", "raft-sentinel"], "raft": ["raft-sentinel"],
               "sentinel": ["redis-sentinel"]}[a.target]
    res = {(t, loaded): [] for t in targets for loaded in (False, True)}
    for i in range(a.runs):
        for t in targets:
            for loaded in (False, True):
                r = one_run(binary, t, loaded, a)
                res[(t, loaded)].append(r)
                took = f"{r['took'] * 1000:.0f} ms" if r["took"] is not None else "none in 60 s"
                print(f"run {i + 1} {t:<15} {'flood' if loaded else 'idle ':<6} failover {took}, "
                      f"RSS {r['rss_before']} -> peak {r['peak']} MiB, commit p99 <= "
                      f"{r['commit_p99']} s over {r['proposals']} proposals, no leader contact "
                      f"{r['no_contact']}, idle conns {r['idle']}, slowloris reconnects "
                      f"{r['reconnects']}", flush=True)
    print(f"\nflood: {a.idle} idle + {a.slow} slowloris + {a.pipe} pipelining (-P 16) clients on "
          f"member 1; master SIGKILLed after {a.warmup:.0f} s; down-after 1000 ms; median of "
          f"{a.runs} runs (release build)")
    print(f"{'target':<16}{'idle ms':>9}{'flood ms':>10}{'flood/idle':>11}{'RSS MiB before':>16}"
          f"{'peak (flood)':>14}{'commit p99 (flood)':>20}")
    med = {}
    for t in targets:
        row = []
        for loaded in (False, True):
            took = [r["took"] for r in res[(t, loaded)] if r["took"] is not None]
            row.append(statistics.median(took) * 1000 if took else float("nan"))
        med[t] = row
        fl = res[(t, True)]
        p = sorted((r["commit_p99"] for r in fl if r["commit_p99"]), key=float)
        print(f"{t:<16}{row[0]:>9.0f}{row[1]:>10.0f}{row[1] / row[0]:>11.2f}"
              f"{statistics.median(r['rss_before'] for r in fl):>16.0f}"
              f"{max(r['peak'] for r in fl):>14}"
              f"{(p[-1] + ' s') if p else '-':>20}")
    if len(targets) == 2:
        print(f"ratio raft/sentinel under flood: {med['raft-sentinel'][1] / med['redis-sentinel'][1]:.2f}")


if __name__ == "__main__":
    main()
