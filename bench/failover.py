#!/usr/bin/env python3
"""Failover speed and safety, raft-sentinel side by side with redis-sentinel, on the same
machine, the same kind of Redis set (a master and two replicas on loopback) and the same
down-after. Prints each measurement, medians, and the ratio raft-sentinel / redis-sentinel.

  kill:       kill -9 of the master until a write succeeds on the new master (and how far
              past down-after that is)
  sigstop:    master SIGSTOPped for 3 s; after SIGCONT, how long the old master still accepts
              writes (until it answers READONLY)
  switchover: continuous writes through a planned switchover (raft-sentinel: ctl switchover,
              the zero-loss path; redis-sentinel: SENTINEL FAILOVER); acknowledged writes lost
              and the longest write pause

Usage: bench/failover.py [--bin target/release/raft-sentinel] [--runs 5] [--down-after 1000]
       [--only kill,sigstop,switchover] [--target both|raft|sentinel]
Everything runs on 127.0.0.1 and is stopped by pid at the end.
"""
import argparse, os, shutil, signal, statistics, subprocess, sys, tempfile, time

# The RESP client and the process helper are chaos's, shared by every Python tool here.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chaos"))
import resp  # noqa: E402
from procs import free_port, spawn  # noqa: E402
from resp import RespError, raised  # noqa: E402


def call(host, port, *args, timeout=0.3):
    """One command on a fresh connection (short timeouts: a dead peer must not stall us); an
    error reply is raised as RespError."""
    return raised(resp.call(host, port, *args, timeout=timeout))


class Conn(resp.Conn):
    """A persistent connection for the writer; error replies are raised."""

    def __init__(self, host, port, timeout=0.2):
        super().__init__(host, port, timeout)

    def cmd(self, *args):
        return raised(self.call(*args))


# --- processes ---

class Procs:
    """The processes of a run by name (chaos's procs.Proc: stopped by pid)."""
    def __init__(self):
        self.procs = {}
    def start(self, name, argv, log):
        self.procs[name] = spawn(argv, name, log, stdout=subprocess.DEVNULL)
    def kill(self, name):
        p = self.procs.pop(name, None)
        if p:
            p.signal(signal.SIGCONT)
            p.kill9()
    def signal(self, name, sig):
        self.procs[name].signal(sig)
    def stop_all(self):
        for n in list(self.procs):
            self.kill(n)

def wait(cond, limit, what):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except (OSError, RespError, ConnectionError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")

class RedisSet:
    def __init__(self, procs, d):
        self.procs, self.d = procs, d
        self.ports = [free_port() for _ in range(3)]
    def start(self, i, replica_of=None):
        argv = ["redis-server", "--port", str(self.ports[i]), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.d, "--dbfilename", f"dump{i}.rdb"]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.procs.start(f"redis{i}", argv, os.path.join(self.d, f"redis{i}.log"))
        wait(lambda: call("127.0.0.1", self.ports[i], "PING") == "PONG", 10, f"redis {i}")
    def start_all(self):
        self.start(0)
        self.start(1, self.ports[0])
        self.start(2, self.ports[0])
    def index(self, port):
        return self.ports.index(port)

# --- the two targets ---

class RaftTarget:
    name = "raft-sentinel"
    def __init__(self, procs, d, rs, args):
        self.procs, self.d, self.rs, self.bin = procs, d, rs, args.bin
        self.sentinel = [free_port() for _ in range(3)]
        self.grpc = [free_port() for _ in range(3)]
        peer = [free_port() for _ in range(3)]
        for i in range(3):
            cfg = [f"node_id = {i+1}", f'data_dir = "{d}/node{i+1}"', "[listen]",
                   f'sentinel = "127.0.0.1:{self.sentinel[i]}"', f'grpc = "127.0.0.1:{self.grpc[i]}"',
                   f'peer = "127.0.0.1:{peer[i]}"', f'metrics = "127.0.0.1:{free_port()}"']
            for j in range(3):
                cfg += ["[[peers]]", f"id = {j+1}", f'addr = "127.0.0.1:{peer[j]}"']
            cfg += ["[raft]", 'initial_cluster_state = "new"']
            cfg += ["[[masters]]", 'name = "mymaster"', f'addr = "127.0.0.1:{rs.ports[0]}"', "quorum = 2",
                    f"down_after_ms = {args.down_after}", f"failover_timeout_ms = {FAILOVER_TIMEOUT_MS}"]
            path = f"{d}/node{i+1}.toml"
            open(path, "w").write("\n".join(cfg) + "\n")
            procs.start(f"node{i}", [self.bin, "run", "--config", path], f"{d}/node{i+1}.log")
        # The anti-flapping budget (3 automatic failovers per 10 minutes) would stop a benchmark
        # that fails over every few seconds: lift it.
        wait(lambda: call("127.0.0.1", self.sentinel[0], "SENTINEL", "SET", "mymaster", "failover-budget", "0") == "OK",
             30, "raft-sentinel to accept SENTINEL SET")
    def master(self):
        for p in self.sentinel:
            try:
                r = call("127.0.0.1", p, "SENTINEL", "get-master-addr-by-name", "mymaster")
                if r:
                    return int(r[1])
            except (OSError, RespError, ConnectionError):
                continue
        return None
    def replicas_ok(self, master_port):
        info = call("127.0.0.1", master_port, "INFO", "replication")
        return "connected_slaves:2" in info
    def switchover(self):
        eps = ",".join(f"127.0.0.1:{g}" for g in self.grpc)
        r = subprocess.run([self.bin, "ctl", "--endpoint", eps, "switchover", "mymaster"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"switchover failed: {r.stderr}")

class SentinelTarget:
    name = "redis-sentinel"
    def __init__(self, procs, d, rs, args):
        self.procs, self.d = procs, d
        self.sentinel = [free_port() for _ in range(3)]
        for i in range(3):
            path = f"{d}/sentinel{i}.conf"
            open(path, "w").write(
                f"port {self.sentinel[i]}\nbind 127.0.0.1\ndir {d}\n"
                f"sentinel monitor mymaster 127.0.0.1 {rs.ports[0]} 2\n"
                f"sentinel down-after-milliseconds mymaster {args.down_after}\n"
                f"sentinel failover-timeout mymaster {FAILOVER_TIMEOUT_MS}\nsentinel parallel-syncs mymaster 1\n")
            procs.start(f"sentinel{i}", ["redis-sentinel", path], f"{d}/sentinel{i}.log")
        wait(lambda: all(len(call("127.0.0.1", p, "SENTINEL", "sentinels", "mymaster")) == 2
                         for p in self.sentinel), 30, "sentinels to discover each other")
    master = RaftTarget.master
    replicas_ok = RaftTarget.replicas_ok
    def switchover(self):
        call("127.0.0.1", self.sentinel[0], "SENTINEL", "FAILOVER", "mymaster", timeout=2)

# Both targets: redis-sentinel will not start another failover of a master within twice this
# after its last attempt, so runs start at least that long after the previous failover.
FAILOVER_TIMEOUT_MS = 3000
LAST_FAILOVER = [0.0]

def settle(t, rs):
    """A stable starting point: every node answers the same master, which has both replicas,
    and redis-sentinel's failover block since the previous failover has passed."""
    def ok():
        m = t.master()
        if m is None:
            return None
        answers = set()
        for p in t.sentinel:
            r = call("127.0.0.1", p, "SENTINEL", "get-master-addr-by-name", "mymaster")
            answers.add(int(r[1]))
        return m if answers == {m} and t.replicas_ok(m) and call("127.0.0.1", m, "ROLE")[0] == "master" else None
    m = wait(ok, 60, f"{t.name} to settle")
    time.sleep(max(1.0, LAST_FAILOVER[0] + 2.3 * FAILOVER_TIMEOUT_MS / 1000 - time.monotonic()))
    return m

def restart_as_replica(rs, i, master_port):
    rs.procs.kill(f"redis{i}")
    rs.start(i, master_port)

def write_until_new_master(t, old_port, t0, limit=60):
    """Writes through the target's answer until a write succeeds on a new master."""
    end = time.monotonic() + limit
    n = 0
    while time.monotonic() < end:
        m = t.master()
        if m and m != old_port:
            try:
                call("127.0.0.1", m, "SET", "bench", n, timeout=0.1)
                return time.monotonic() - t0
            except (OSError, RespError, ConnectionError):
                pass
        n += 1
        time.sleep(0.005)
    raise SystemExit("no write succeeded on a new master")

def bench_kill(t, rs, runs, down_after):
    out = []
    for r in range(runs):
        m = settle(t, rs)
        i = rs.index(m)
        t0 = time.monotonic()
        rs.procs.kill(f"redis{i}")
        took = write_until_new_master(t, m, t0)
        LAST_FAILOVER[0] = time.monotonic()
        out.append(took * 1000)
        print(f"  {t.name} kill run {r+1}: write on the new master after {took*1000:.0f} ms "
              f"({took*1000 - down_after:.0f} ms past down-after)", flush=True)
        restart_as_replica(rs, i, t.master())
    return out

def bench_sigstop(t, rs, runs, stop_s=3.0):
    out = []
    for r in range(runs):
        m = settle(t, rs)
        i = rs.index(m)
        rs.procs.signal(f"redis{i}", signal.SIGSTOP)
        t0 = time.monotonic()
        wait(lambda m=m: (t.master() or m) != m, 60, "failover during SIGSTOP")
        LAST_FAILOVER[0] = time.monotonic()
        time.sleep(max(0.0, stop_s - (time.monotonic() - t0)))
        rs.procs.signal(f"redis{i}", signal.SIGCONT)
        tc = time.monotonic()
        writable_for = None
        while time.monotonic() - tc < 30:
            try:
                call("127.0.0.1", m, "SET", "stale-write", r, timeout=0.2)
            except RespError as e:
                if "READONLY" in str(e):
                    writable_for = time.monotonic() - tc
                    break
            except (OSError, ConnectionError):
                pass
            time.sleep(0.005)
        if writable_for is None:
            writable_for = 30.0
        out.append(writable_for * 1000)
        print(f"  {t.name} sigstop run {r+1}: old master writable for {writable_for*1000:.0f} ms after SIGCONT", flush=True)
    return out

def bench_switchover(t, rs, runs):
    lost_all, pauses = [], []
    for r in range(runs):
        m = settle(t, rs)
        acked = []
        last_ok = time.monotonic()
        max_pause = 0.0
        conn, conn_port = None, None
        seq = 0
        started = None
        done_at = None
        import threading
        def trigger():
            t.switchover()
        th = None
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            now = time.monotonic()
            if started is None and now - last_ok > 0 and len(acked) > 200:
                started = now
                th = threading.Thread(target=trigger)
                th.start()
            mp = t.master()
            if mp is None:
                time.sleep(0.005)
                continue
            if conn_port != mp:
                if conn:
                    conn.close()
                try:
                    conn, conn_port = Conn("127.0.0.1", mp), mp
                except OSError:
                    conn, conn_port = None, None
                    continue
            seq += 1
            try:
                conn.cmd("SET", f"w:{r}:{seq}", seq)
                now = time.monotonic()
                if started is not None:
                    max_pause = max(max_pause, now - last_ok)
                last_ok = now
                acked.append(seq)
                if started is not None and conn_port != m and done_at is None:
                    done_at = now
            except (OSError, RespError, ConnectionError):
                if conn:
                    conn.close()
                conn, conn_port = None, None
            if done_at is not None and time.monotonic() - done_at > 2.0:
                break
        if th:
            th.join()
        LAST_FAILOVER[0] = time.monotonic()
        final = settle(t, rs)
        present = 0
        for k in range(0, len(acked), 500):
            chunk = acked[k:k+500]
            vals = call("127.0.0.1", final, "MGET", *[f"w:{r}:{s}" for s in chunk], timeout=5)
            present += sum(1 for v in vals if v is not None)
        lost = len(acked) - present
        lost_all.append(lost)
        pauses.append(max_pause * 1000)
        print(f"  {t.name} switchover run {r+1}: {len(acked)} acked, {lost} lost, longest write pause {max_pause*1000:.0f} ms", flush=True)
    return lost_all, pauses

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--down-after", type=int, default=1000)
    ap.add_argument("--only", default="kill,sigstop,switchover")
    ap.add_argument("--target", default="both", choices=["both", "raft", "sentinel"])
    args = ap.parse_args()
    for tool in ("redis-server", "redis-sentinel"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install redis-server redis-sentinel)")
    if args.target != "sentinel" and not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: cargo build --release first")
    only = set(args.only.split(","))
    targets = {"both": [RaftTarget, SentinelTarget], "raft": [RaftTarget], "sentinel": [SentinelTarget]}[args.target]
    results = {}
    for cls in targets:
        d = tempfile.mkdtemp(prefix="failover-bench-")
        procs = Procs()
        try:
            rs = RedisSet(procs, d)
            rs.start_all()
            t = cls(procs, d, rs, args)
            print(f"{t.name}: down-after {args.down_after} ms, {args.runs} runs", flush=True)
            res = {}
            if "kill" in only:
                res["kill"] = bench_kill(t, rs, args.runs, args.down_after)
            if "sigstop" in only:
                res["sigstop"] = bench_sigstop(t, rs, args.runs)
            if "switchover" in only:
                res["switchover_lost"], res["switchover_pause"] = bench_switchover(t, rs, args.runs)
            results[t.name] = res
        finally:
            procs.stop_all()
            shutil.rmtree(d, ignore_errors=True)
    print("\nsummary (medians)")
    rows = [("kill", "kill -9 master -> write on new master (ms)"),
            ("sigstop", "old master writable after SIGCONT (ms)"),
            ("switchover_lost", "acked writes lost in a switchover"),
            ("switchover_pause", "longest write pause in a switchover (ms)")]
    a, b = results.get("raft-sentinel", {}), results.get("redis-sentinel", {})
    for key, label in rows:
        if key not in a and key not in b:
            continue
        ra, rb = med(a.get(key, [])), med(b.get(key, []))
        ratio = f"{ra / rb:.2f}" if a.get(key) and b.get(key) and rb else "-"
        extra = ""
        if key == "kill":
            extra = f"   (raft-sentinel {ra - args.down_after:.0f} ms past down-after, redis-sentinel {rb - args.down_after:.0f} ms)"
        print(f"  {label:45} raft-sentinel {ra:8.0f}   redis-sentinel {rb:8.0f}   ratio {ratio}{extra}")

if __name__ == "__main__":
    main()
