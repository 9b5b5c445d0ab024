#!/usr/bin/env python3
"""Measures the Raft core of raft-sentinel on loopback with three real nodes (fsync on):

1. proposal commit latency p50/p99 as seen by a gRPC client (`ctl bench`), once against the
   leader and once through a follower (forwarded);
2. GetMaster latency and rate, LOCAL and LINEARIZABLE, through the leader and a follower;
3. time from kill -9 of the leader until a new leader commits a proposal, median of N runs.

Usage: bench/raft.py [--runs 10] [--proposals 500] [--tick-ms 100] [--election-ticks 10]
Builds nothing: run `cargo build --release` (or pass --bin) first.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chaos"))
from procs import free_port, spawn  # noqa: E402

class Node:
    def __init__(self, bin, dir, nid, ports, peers, args):
        self.bin, self.id, self.ports = bin, nid, ports
        self.dir = os.path.join(dir, f"node{nid}")
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "config.toml")
        lines = [f'node_id = {nid}', f'data_dir = "{self.dir}/data"', "[listen]",
                 f'sentinel = "127.0.0.1:{ports["sentinel"]}"', f'grpc = "127.0.0.1:{ports["grpc"]}"',
                 f'peer = "127.0.0.1:{ports["peer"]}"', f'metrics = "127.0.0.1:{ports["metrics"]}"']
        for pid, paddr in peers:
            lines += ["[[peers]]", f"id = {pid}", f'addr = "{paddr}"']
        lines += ["[raft]", 'initial_cluster_state = "new"', f"tick_ms = {args.tick_ms}", f"election_ticks = {args.election_ticks}",
                  "heartbeat_ticks = 2"]
        open(self.config, "w").write("\n".join(lines) + "\n")
        self.proc = None

    def grpc(self):
        return f"127.0.0.1:{self.ports['grpc']}"

    def start(self):
        self.proc = spawn([self.bin, "run", "--config", self.config], f"node{self.id}",
                          os.path.join(self.dir, "node.log"), stdout=subprocess.DEVNULL)

    def kill9(self):
        if self.proc:
            self.proc.kill9()
            self.proc = None

def ctl(bin, endpoints, *args, timeout=10, attempt_ms=3000):
    r = subprocess.run([bin, "ctl", "--endpoint", ",".join(endpoints), "--timeout-ms", str(attempt_ms), *args],
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr

def leader(bin, nodes):
    for n in nodes:
        if n.proc is None:
            continue
        code, out, _ = ctl(bin, [n.grpc()], "status", "--json")
        if code == 0:
            st = json.loads(out)
            if st["leader_id"]:
                return st["leader_id"]
    return 0

def wait_leader(bin, nodes, limit=30):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        lead = leader(bin, nodes)
        if lead:
            return lead
        time.sleep(0.05)
    sys.exit("no leader elected")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--proposals", type=int, default=500)
    ap.add_argument("--tick-ms", type=int, default=100)
    ap.add_argument("--election-ticks", type=int, default=10)
    ap.add_argument("--reads", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} not found: run cargo build --release first")
    d = tempfile.mkdtemp(prefix="raft-bench-")
    ports = [{k: free_port() for k in ("sentinel", "grpc", "peer", "metrics")} for _ in range(3)]
    peers = [(i + 1, f"127.0.0.1:{p['peer']}") for i, p in enumerate(ports)]
    nodes = [Node(args.bin, d, i + 1, ports[i], peers, args) for i in range(3)]
    redis = None
    try:
        # A real master behind "mymaster", so the cluster is in its normal state while reading.
        redis_port = free_port()
        redis = spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no"], "redis", os.path.join(d, "redis.log"),
                      stdout=subprocess.DEVNULL)
        for n in nodes:
            n.start()
        lead = wait_leader(args.bin, nodes)
        follower = next(n for n in nodes if n.id != lead)
        print(f"3 nodes on loopback, fsync on, tick {args.tick_ms} ms, election {args.election_ticks} ticks")
        for label, node in (("leader", nodes[lead - 1]), ("follower", follower)):
            code, out, err = ctl(args.bin, [node.grpc()], "bench", "--count", str(args.proposals), "--json", timeout=300)
            if code != 0:
                sys.exit(f"bench failed: {err}")
            r = json.loads(out)
            print(f"commit latency via {label:8}: n={r['count']} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.2f} ms")
        code, _, err = ctl(args.bin, [nodes[0].grpc()], "monitor", "mymaster", "127.0.0.1", str(redis_port), "2")
        if code != 0:
            sys.exit(f"monitor failed: {err}")
        for op in ("get-local", "get-linearizable"):
            for label, node in (("leader", nodes[lead - 1]), ("follower", follower)):
                code, out, err = ctl(args.bin, [node.grpc()], "bench", "--op", op, "--count", str(args.reads),
                                     "--concurrency", str(args.concurrency), "--json", timeout=300)
                if code != 0:
                    sys.exit(f"bench {op} failed: {err}")
                r = json.loads(out)
                print(f"GetMaster {op[4:]:13} via {label:8}: n={r['count']} c={r['concurrency']} "
                      f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  {r['per_second']:.0f} req/s")
        times = []
        for run in range(args.runs):
            lead = wait_leader(args.bin, nodes)
            time.sleep(1.0)  # a steady state with heartbeats flowing
            victim = nodes[lead - 1]
            others = [n.grpc() for n in nodes if n.id != lead]
            t0 = time.monotonic()
            victim.kill9()
            while True:
                # Short attempts (150 ms): a proposal forwarded to the dead leader is lost, and the
                # measurement is when the cluster can commit again, not a client timeout.
                code, _, _ = ctl(args.bin, others, "monitor", f"after-kill-{run}", "127.0.0.1", "6379", "1",
                                 attempt_ms=150)
                if code == 0:
                    break
                if time.monotonic() - t0 > 30:
                    sys.exit("no commit within 30 s after the leader was killed")
            took = (time.monotonic() - t0) * 1000
            times.append(took)
            print(f"run {run + 1}: leader {lead} killed; a proposal committed after {took:.0f} ms")
            victim.start()
        print(f"kill -9 leader -> new leader commits: median {statistics.median(times):.0f} ms, "
              f"min {min(times):.0f} ms, max {max(times):.0f} ms over {len(times)} runs "
              f"(election timeout {args.tick_ms * args.election_ticks} ms, randomized up to 2x)")
    finally:
        for n in nodes:
            n.kill9()
        if redis:
            redis.kill9()
        shutil.rmtree(d, ignore_errors=True)

if __name__ == "__main__":
    main()
