#!/usr/bin/env python3
"""Many masters: raft-sentinel side by side with redis-sentinel in the same run.

For each N (default 50 and 200): N masters, each with one replica (real redis-server
processes on loopback, no persistence, small memory), watched by 3 raft-sentinel nodes, then
by 3 redis-sentinel processes (fresh Redis servers for each). Then K masters (default 10) are
killed at once, as when one host dies. Reported per target:

  startup:   from starting the 3 processes until every node knows every master and its
             replica (redis-sentinel: and its 2 peers for every master)
  idle CPU:  per node, % of one core over an idle window, from /proc/PID/stat
  RSS:       per node, after the idle window, from /proc/PID/status
  failover:  per killed master, from the kill until the last of the 3 nodes answers the new
             address (median and max); and until all K have switched on every node
  untouched: the other masters' answers on every node, checked during and after the
             failovers, must never change

Usage: bench/scale.py [--bin target/release/raft-sentinel] [--masters 50,200] [--kill 10]
       [--down-after 1000] [--idle 10] [--target both|raft|sentinel] [--keep-logs DIR]

--keep-logs DIR keeps the raft-sentinel nodes' logs (JSON lines) and the kill time in DIR/N<n>/;
bench/scale_breakdown.py DIR/N<n> then splits each failover into its stages.
Everything runs on 127.0.0.1; every process is stopped by pid at the end.
"""
import argparse, json, os, resource, shutil, signal, socket, statistics, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "chaos"))
from failover import Procs, free_port, wait  # noqa: E402
from loadlib import cpu_seconds, rss_kib  # noqa: E402
from resp import Conn, encode  # noqa: E402

FAILOVER_TIMEOUT_MS = 10000


class Pipe(Conn):
    """A persistent connection that sends many commands at once and reads every reply (an
    error reply as a RespError value)."""

    def __init__(self, port, timeout=5.0):
        super().__init__("127.0.0.1", port, timeout)

    def many(self, cmds):
        # In chunks: a server may refuse a very long unread pipeline.
        res = []
        for k in range(0, len(cmds), 16):
            res += self._many(cmds[k:k + 16])
        return res

    def _many(self, cmds):
        self.sock.sendall(b"".join(encode(*args) for args in cmds))
        return [self.read() for _ in cmds]


def distinct_ports(n):
    """n free ports, all different (each stays bound until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def name(i):
    return f"m{i:03d}"


class Fleet:
    """N masters with one replica each."""

    def __init__(self, procs, d, n):
        self.procs, self.d, self.n = procs, d, n
        ports = distinct_ports(2 * n)
        self.master, self.replica = ports[:n], ports[n:]

    def _argv(self, port, of=None):
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.d, "--dbfilename", f"dump{port}.rdb",
                "--maxmemory", "32mb", "--repl-backlog-size", "64kb", "--hz", "1",
                "--repl-diskless-sync-delay", "0",
                "--logfile", ""]
        if of:
            argv += ["--replicaof", "127.0.0.1", str(of)]
        return argv

    def start(self):
        log = os.path.join(self.d, "redis.log")
        for i in range(self.n):
            self.procs.start(f"m{i}", self._argv(self.master[i]), log)
        for i in range(self.n):
            self.procs.start(f"r{i}", self._argv(self.replica[i], self.master[i]), log)

        def linked():
            for i in range(self.n):
                p = Pipe(self.replica[i], timeout=1)
                try:
                    info = p.many([("INFO", "replication")])[0]
                    # A replica still loading answers with an error (-LOADING): not linked yet.
                    if not isinstance(info, str) or "master_link_status:up" not in info:
                        return False
                finally:
                    p.close()
            return True
        try:
            wait(linked, 120, "every replica to sync")
        except SystemExit:
            for i in range(self.n):
                try:
                    p = Pipe(self.replica[i], timeout=1)
                    r = p.many([("INFO", "replication")])[0]
                    p.close()
                except OSError as e:
                    r = str(e)
                if "master_link_status:up" not in r:
                    print(f"replica {self.replica[i]} of {self.master[i]}: {r[:200]!r}", file=sys.stderr)
                    break
            raise

    def kill_master(self, i):
        p = self.procs.procs.pop(f"m{i}")
        p.signal(signal.SIGKILL)
        return p


class RaftTarget:
    name = "raft-sentinel"

    def __init__(self, procs, d, fleet, args):
        self.procs = procs
        self.ports = [free_port() for _ in range(3)]
        peer = [free_port() for _ in range(3)]
        grpc = [free_port() for _ in range(3)]
        self.pids = []
        for i in range(3):
            cfg = [f"node_id = {i+1}", f'data_dir = "{d}/node{i+1}"', "[listen]",
                   f'sentinel = "127.0.0.1:{self.ports[i]}"', f'grpc = "127.0.0.1:{grpc[i]}"',
                   f'peer = "127.0.0.1:{peer[i]}"', f'metrics = "127.0.0.1:{free_port()}"']
            for j in range(3):
                cfg += ["[[peers]]", f"id = {j+1}", f'addr = "127.0.0.1:{peer[j]}"']
            cfg += ["[raft]", 'initial_cluster_state = "new"']
            for k in range(fleet.n):
                cfg += ["[[masters]]", f'name = "{name(k)}"', f'addr = "127.0.0.1:{fleet.master[k]}"',
                        "quorum = 2", f"down_after_ms = {args.down_after}",
                        f"failover_timeout_ms = {FAILOVER_TIMEOUT_MS}"]
            path = f"{d}/node{i+1}.toml"
            open(path, "w").write("\n".join(cfg) + "\n")
            argv = [args.bin, "run", "--config", path]
            if args.keep_logs:
                argv += ["--log-format", "json"]
            procs.start(f"node{i}", argv, f"{d}/node{i+1}.log")
            self.pids.append(procs.procs[f"node{i}"].pid)

    def ready(self, fleet):
        for port in self.ports:
            p = Pipe(port, timeout=2)
            try:
                reps = p.many([("SENTINEL", "replicas", name(k)) for k in range(fleet.n)])
                if any(isinstance(r, Exception) or not r or len(r) != 1 for r in reps):
                    return False
            finally:
                p.close()
        return True


class SentinelTarget:
    name = "redis-sentinel"

    def __init__(self, procs, d, fleet, args):
        self.ports = [free_port() for _ in range(3)]
        self.pids = []
        for i in range(3):
            path = f"{d}/sentinel{i}.conf"
            lines = [f"port {self.ports[i]}", "bind 127.0.0.1", f"dir {d}"]
            for k in range(fleet.n):
                lines += [f"sentinel monitor {name(k)} 127.0.0.1 {fleet.master[k]} 2",
                          f"sentinel down-after-milliseconds {name(k)} {args.down_after}",
                          f"sentinel failover-timeout {name(k)} {FAILOVER_TIMEOUT_MS}",
                          f"sentinel parallel-syncs {name(k)} 1"]
            open(path, "w").write("\n".join(lines) + "\n")
            procs.start(f"sentinel{i}", ["redis-sentinel", path], f"{d}/sentinel{i}.log")
            self.pids.append(procs.procs[f"sentinel{i}"].pid)

    def ready(self, fleet):
        for port in self.ports:
            p = Pipe(port, timeout=2)
            try:
                reps = p.many([("SENTINEL", "replicas", name(k)) for k in range(fleet.n)])
                peers = p.many([("SENTINEL", "sentinels", name(k)) for k in range(fleet.n)])
                if any(isinstance(r, Exception) or not r or len(r) != 1 for r in reps):
                    return False
                if any(isinstance(r, Exception) or len(r) != 2 for r in peers):
                    return False
            finally:
                p.close()
        return True


CLOSED = [0]


def ask(port, names):
    """get-master-addr-by-name for every name, on a fresh connection."""
    # A node without leader contact closes the connection rather than answer what may be a
    # stale address: a few fresh tries, then every name counts as refused.
    for _ in range(5):
        c = Pipe(port)
        try:
            return c.many([("SENTINEL", "get-master-addr-by-name", nm) for nm in names])
        except (OSError, ConnectionError) as e:
            CLOSED[0] += 1
            print(f"  (connection to {port} closed mid-pipeline: {e}; retrying)", flush=True)
            err = ConnectionError(f"closed by the node: {e}")
        finally:
            c.close()
        time.sleep(0.05)
    return [err] * len(names)


def answer(r):
    """A reply as comparable data: the port, or what came instead of an address."""
    if isinstance(r, Exception):
        return f"error: {r}"
    return int(r[1]) if r else None


def answers(ports, names):
    """{(node, master name): port, None (nil) or 'error: ...'} on every node."""
    out = {}
    for ni, port in enumerate(ports):
        for nm, r in zip(names, ask(port, names)):
            out[(ni, nm)] = answer(r)
    return out


def note_changes(now, before, changes, t0):
    """Adds each answer that differs from before, with the time since the kill."""
    at = (time.monotonic() - t0) * 1000
    for k, v in now.items():
        if v != before[k]:
            changes.append((at, k[0], k[1], before[k], v))


def measure_idle(pids, secs):
    t0 = [cpu_seconds(p) for p in pids]
    time.sleep(secs)
    t1 = [cpu_seconds(p) for p in pids]
    cpu = [100.0 * (b - a) / secs for a, b in zip(t0, t1)]
    return cpu, [rss_kib(p) / 1024 for p in pids]


def run_one(cls, n, args):
    d = tempfile.mkdtemp(prefix="scale-bench-")
    procs = Procs()
    res = {}
    try:
        fleet = Fleet(procs, d, n)
        fleet.start()
        t_start = time.monotonic()
        t = cls(procs, d, fleet, args)
        wait(lambda: t.ready(fleet), 180, f"{t.name} to know all {n} masters")
        res["startup_ms"] = (time.monotonic() - t_start) * 1000
        print(f"  {t.name} N={n}: startup {res['startup_ms']:.0f} ms", flush=True)
        time.sleep(args.settle)
        res["cpu"], res["rss"] = measure_idle(t.pids, args.idle)
        print(f"  {t.name} N={n}: idle CPU per node " + ", ".join(f"{c:.1f}%" for c in res["cpu"])
              + "; RSS " + ", ".join(f"{r:.1f} MiB" for r in res["rss"]), flush=True)

        names = [name(k) for k in range(n)]
        before = answers(t.ports, names)
        if any(not isinstance(v, int) for v in before.values()):
            raise SystemExit(f"{t.name}: a node has no answer before the kill")
        step = n // args.kill
        killed = [k * step for k in range(args.kill)]
        killed_names = {name(k): k for k in killed}
        untouched = [nm for nm in names if nm not in killed_names]

        CLOSED[0] = 0
        t0 = time.monotonic()
        wall0 = time.time()
        for k in killed:
            fleet.kill_master(k)
        switched = {}  # (node, name) -> ms
        changed = []
        deadline = t0 + 60
        last_full = 0.0
        while time.monotonic() < deadline:
            pending = [nm for nm in killed_names
                       if any((ni, nm) not in switched for ni in range(3))]
            if not pending:
                break
            for ni, port in enumerate(t.ports):
                want = [nm for nm in pending if (ni, nm) not in switched]
                if not want:
                    continue
                now_ms = None
                for nm, r in zip(want, ask(port, want)):
                    if isinstance(r, Exception) or not r:
                        continue
                    port = int(r[1])
                    if port != fleet.master[killed_names[nm]]:
                        if port != fleet.replica[killed_names[nm]]:
                            raise SystemExit(f"{t.name}: {nm} switched to {port}, not its replica")
                        now_ms = now_ms or (time.monotonic() - t0) * 1000
                        switched[(ni, nm)] = now_ms
            if time.monotonic() - last_full > 0.25:
                last_full = time.monotonic()
                note_changes(answers(t.ports, untouched), before, changed, t0)
            time.sleep(0.002)
        missing = [(ni, nm) for nm in killed_names for ni in range(3) if (ni, nm) not in switched]
        if missing:
            print(f"  {t.name} N={n}: NOT switched within 60 s: {missing}", flush=True)
        # A master not switched on every node within 60 s counts as 60 s.
        per_master = [max(switched.get((ni, nm), 60000.0) for ni in range(3)) for nm in killed_names]
        # Let a wrong late switch of an untouched master show.
        time.sleep(2)
        note_changes(answers(t.ports, untouched), before, changed, t0)
        res["failover"] = per_master
        if args.keep_logs and cls is RaftTarget:
            keep = os.path.join(args.keep_logs, f"N{n}")
            os.makedirs(keep, exist_ok=True)
            for i in range(3):
                shutil.copy(f"{d}/node{i+1}.log", f"{keep}/node{i+1}.log")
            with open(f"{keep}/meta.json", "w") as f:
                json.dump({"kill_wall": wall0, "down_after_ms": args.down_after,
                           "killed": {nm: [fleet.master[k], fleet.replica[k]]
                                      for nm, k in killed_names.items()},
                           "seen_ms": {nm: [switched.get((ni, nm)) for ni in range(3)]
                                       for nm in killed_names}}, f, indent=1)
        res["all_ms"] = max(per_master)
        res["untouched_changed"] = len({(c[1], c[2]) for c in changed})
        # What each changed answer became, so that a wrong switch (another port) is told from
        # a node that answered nil or an error for a while.
        for at, ni, nm, was, became in changed[:20]:
            print(f"  {t.name} N={n}: untouched {nm} on node {ni + 1} at +{at:.0f} ms: "
                  f"{was} -> {became}", flush=True)
        if args.keep_logs and changed and cls is RaftTarget:
            with open(os.path.join(args.keep_logs, f"N{n}", "changed.json"), "w") as f:
                json.dump(changed, f, indent=1)
        print(f"  {t.name} N={n}: {args.kill} killed: per master median {statistics.median(per_master):.0f} ms,"
              f" max {max(per_master):.0f} ms; all switched on every node after {res['all_ms']:.0f} ms;"
              f" untouched answers changed: {res['untouched_changed']};"
              f" lookup connections closed by a node: {CLOSED[0]}", flush=True)
        return res
    finally:
        procs.stop_all()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--masters", default="50,200")
    ap.add_argument("--kill", type=int, default=10)
    ap.add_argument("--down-after", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=10.0, help="idle measuring window, seconds")
    ap.add_argument("--settle", type=float, default=5.0, help="wait after startup, seconds")
    ap.add_argument("--target", default="both", choices=["both", "raft", "sentinel"])
    ap.add_argument("--keep-logs", default=None, help="keep node logs and kill times here")
    args = ap.parse_args()
    if args.keep_logs:
        os.environ.setdefault("RAFT_SENTINEL_LOG", "info,raft_rs=warn")
    for tool in ("redis-server", "redis-sentinel"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install redis-server redis-sentinel)")
    if args.target != "sentinel" and not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: cargo build --release first")
    # Two Redis servers per master plus every node's connections to them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    targets = {"both": [RaftTarget, SentinelTarget], "raft": [RaftTarget],
               "sentinel": [SentinelTarget]}[args.target]
    print(f"down-after {args.down_after} ms, {args.kill} masters killed at once, "
          f"idle window {args.idle:.0f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    table = []
    for n in (int(x) for x in args.masters.split(",")):
        results = {}
        for cls in targets:
            results[cls.name] = run_one(cls, n, args)
        table.append((n, results))
    print(f"\nsummary (per node: mean of the 3; load average now {os.getloadavg()[0]:.2f})")
    for n, results in table:
        a, b = results.get("raft-sentinel"), results.get("redis-sentinel")
        print(f"N = {n}")
        rows = [
            ("startup (ms)", lambda r: r["startup_ms"]),
            ("idle CPU per node (% of a core)", lambda r: statistics.mean(r["cpu"])),
            ("RSS per node (MiB)", lambda r: statistics.mean(r["rss"])),
            ("failover per master, median (ms)", lambda r: statistics.median(r["failover"])),
            ("failover per master, max (ms)", lambda r: max(r["failover"])),
            (f"all {args.kill} switched on every node (ms)", lambda r: r["all_ms"]),
            ("untouched answers changed", lambda r: r["untouched_changed"]),
        ]
        for label, f in rows:
            va = f(a) if a else None
            vb = f(b) if b else None
            ratio = f"{va / vb:.2f}" if va is not None and vb else "-"
            fa = f"{va:10.1f}" if va is not None else "         -"
            fb = f"{vb:10.1f}" if vb is not None else "         -"
            print(f"  {label:40} raft-sentinel {fa}   redis-sentinel {fb}   ratio {ratio}")


if __name__ == "__main__":
    main()
