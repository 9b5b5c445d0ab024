#!/usr/bin/env python3
"""Time from restarting a node to its first answer on the Sentinel port.

Three real nodes on loopback monitor one master. Each run kill -9s the next node in turn
(the leader too, when it is its turn: then the restart overlaps an election), restarts it
from its data dir and polls its Sentinel port every 5 ms with
`SENTINEL GET-MASTER-ADDR-BY-NAME mymaster` until it answers with the address (a node that
has not caught up with the leader yet closes the connection instead). Prints each run, the
median and the maximum. Goal: under 1 s with the leader reachable.

Usage: bench/restart.py [--runs 10] [--bin target/release/raft-sentinel] [--tick-ms 100]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chaos"))
from procs import free_port, spawn  # noqa: E402
from resp import call  # noqa: E402

def write_config(path, nid, ports, peers, tick_ms, master_port):
    lines = [f"node_id = {nid}", f'data_dir = "{os.path.dirname(path)}/data"', "[listen]",
             f'sentinel = "127.0.0.1:{ports["sentinel"]}"', f'grpc = "127.0.0.1:{ports["grpc"]}"',
             f'peer = "127.0.0.1:{ports["peer"]}"', f'metrics = "127.0.0.1:{ports["metrics"]}"']
    for pid, paddr in peers:
        lines += ["[[peers]]", f"id = {pid}", f'addr = "{paddr}"']
    lines += ["[raft]", 'initial_cluster_state = "new"', f"tick_ms = {tick_ms}",
              "election_ticks = 10", "heartbeat_ticks = 2",
              "[[masters]]", 'name = "mymaster"', f'addr = "127.0.0.1:{master_port}"', "quorum = 2"]
    open(path, "w").write("\n".join(lines) + "\n")

def lookup(port):
    """The reply to GET-MASTER-ADDR-BY-NAME, or None (refused, closed, not listening, no master)."""
    try:
        r = call("127.0.0.1", port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster", timeout=0.5)
    except OSError:
        return None
    return r if isinstance(r, list) and len(r) == 2 else None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--bin", default="target/release/raft-sentinel")
    ap.add_argument("--tick-ms", type=int, default=100)
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} not found: cargo build --release (or pass --bin)")
    tmp = tempfile.mkdtemp(prefix="restart-bench-")
    master_port = free_port()
    master = spawn(["redis-server", "--port", str(master_port), "--save", "", "--dir", tmp], "redis",
                   os.path.join(tmp, "redis.log"), stdout=subprocess.DEVNULL)
    ports = {i: {k: free_port() for k in ("sentinel", "grpc", "peer", "metrics")} for i in (1, 2, 3)}
    peers = [(i, f"127.0.0.1:{ports[i]['peer']}") for i in (1, 2, 3)]
    procs, configs = {}, {}
    def start(i):
        procs[i] = spawn([a.bin, "run", "--config", configs[i]], f"node{i}",
                         os.path.join(tmp, f"node{i}", "node.log"), stdout=subprocess.DEVNULL)
    try:
        for i in (1, 2, 3):
            os.makedirs(os.path.join(tmp, f"node{i}"))
            configs[i] = os.path.join(tmp, f"node{i}", "config.toml")
            write_config(configs[i], i, ports[i], peers, a.tick_ms, master_port)
            start(i)
        deadline = time.time() + 30
        while not all(lookup(ports[i]["sentinel"]) for i in (1, 2, 3)):
            if time.time() > deadline:
                sys.exit("the cluster did not answer within 30 s")
            time.sleep(0.05)
        times = []
        for run in range(a.runs):
            victim = 1 + run % 3
            procs[victim].kill9()
            time.sleep(1.0)
            t0 = time.monotonic()
            start(victim)
            while lookup(ports[victim]["sentinel"]) is None:
                if time.monotonic() - t0 > 30:
                    sys.exit(f"node {victim} did not answer within 30 s of its restart")
                time.sleep(0.005)
            dt = (time.monotonic() - t0) * 1000
            times.append(dt)
            print(f"run {run + 1}: node {victim} answered {dt:.0f} ms after its restart")
            time.sleep(0.5)
        print(f"restart to first answer: median {statistics.median(times):.0f} ms, "
              f"max {max(times):.0f} ms over {len(times)} runs (tick {a.tick_ms} ms, binary {a.bin})")
    finally:
        for p in procs.values():
            p.kill9()
        master.kill9()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
