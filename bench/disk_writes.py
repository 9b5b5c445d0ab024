#!/usr/bin/env python3
"""Bytes a raft-sentinel node writes: idle, while one master's observation flaps, per failover.

Three real nodes on loopback (fsync on) monitor one Redis master with one replica. For every
node it reads /proc/<pid>/io before and after (`wchar`: bytes handed to write(2)/pwrite(2),
whatever the file system; `write_bytes`: bytes sent to the block device) and the applied index,
and prints bytes per hour and per applied entry.

  --mode idle:     nothing changes for --seconds (failover not paused): what a healthy
                   cluster writes.
  --mode flap:     failover paused; the master is stopped (SIGSTOP) for 2.5 s and continued
                   for 2.5 s, over and over: every node's view of it goes down and up once per
                   5 s period.
  --mode failover: --failovers forced failovers (ctl failover), each waited for until the
                   new master is committed and its reconfiguration ended; bytes per failover.

Usage: bench/disk_writes.py [--mode flap] [--seconds 60] [--failovers 5]
       [--bin target/debug/raft-sentinel] [--masters 1]
`--masters N` monitors N-1 more healthy masters, to show how the figure grows with the state.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "chaos"))
from procs import free_port, spawn  # noqa: E402


def proc_io(pid):
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out


def ctl(bin, endpoints, *args):
    r = subprocess.run([bin, "ctl", "--endpoint", ",".join(endpoints), "--timeout-ms", "3000", *args],
                       capture_output=True, text=True, timeout=15)
    return r.returncode, r.stdout, r.stderr


def redis(dir, port, replicaof=None):
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", dir, "--protected-mode", "no"]
    if replicaof:
        args += ["--replicaof", "127.0.0.1", str(replicaof)]
    return spawn(args, f"redis-{port}", os.path.join(dir, f"redis-{port}.log"), stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "raft-sentinel"))
    ap.add_argument("--masters", type=int, default=1)
    ap.add_argument("--mode", choices=["idle", "flap", "failover"], default="flap")
    ap.add_argument("--failovers", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rs-disk-")
    procs = []
    try:
        mport, rport = free_port(), free_port()
        master = redis(tmp, mport)
        procs.append(master)
        procs.append(redis(tmp, rport, mport))
        others = []
        for _ in range(1, args.masters):
            p = free_port()
            others.append(p)
            procs.append(redis(tmp, p))
        ports = [{k: free_port() for k in ("sentinel", "grpc", "peer", "metrics")} for _ in range(3)]
        nodes = []
        for i in range(3):
            d = os.path.join(tmp, f"node{i + 1}")
            os.makedirs(d)
            lines = [f"node_id = {i + 1}", f'data_dir = "{d}/data"', "[listen]"]
            lines += [f'{k} = "127.0.0.1:{v}"' for k, v in ports[i].items()]
            for j in range(3):
                lines += ["[[peers]]", f"id = {j + 1}", f'addr = "127.0.0.1:{ports[j]["peer"]}"']
            lines += ["[raft]", 'initial_cluster_state = "new"', "tick_ms = 50", "election_ticks = 10",
                      "heartbeat_ticks = 2"]
            masters = [("mymaster", mport)] + [(f"m{k}", p) for k, p in enumerate(others)]
            for name, p in masters:
                lines += ["[[masters]]", f'name = "{name}"', f'addr = "127.0.0.1:{p}"', "quorum = 2",
                          "down_after_ms = 1000"]
            cfg = os.path.join(d, "config.toml")
            open(cfg, "w").write("\n".join(lines) + "\n")
            p = spawn([args.bin, "run", "--config", cfg], f"node{i + 1}", os.path.join(d, "node.log"),
                      stdout=subprocess.DEVNULL)
            procs.append(p)
            nodes.append(p)
        eps = [f"127.0.0.1:{p['grpc']}" for p in ports]
        deadline = time.time() + 30
        while time.time() < deadline:
            code, out, _ = ctl(args.bin, eps, "--json", "master", "mymaster")
            if code == 0 and json.loads(out)["replicas"]:
                break
            time.sleep(0.3)
        else:
            sys.exit("cluster did not come up")
        if args.mode == "flap":
            code, _, err = ctl(args.bin, eps, "pause", "mymaster")
            if code != 0:
                sys.exit(f"pause failed: {err}")
        time.sleep(3)

        def master_info():
            code, out, _ = ctl(args.bin, eps, "--json", "master", "mymaster")
            return json.loads(out) if code == 0 else None

        def applied():
            code, out, _ = ctl(args.bin, eps, "--json", "status")
            st = json.loads(out)
            return st.get("applied_index") or max(m.get("applied_index", 0) for m in st.get("members", [{}]))

        logs = [os.path.join(tmp, f"node{i + 1}", "node.log") for i in range(3)]
        log_before = [os.path.getsize(f) for f in logs]
        before = [proc_io(p.pid) for p in nodes]
        a0 = applied()
        t0 = time.time()
        flaps = 0
        failovers = 0
        if args.mode == "idle":
            time.sleep(args.seconds)
        elif args.mode == "flap":
            while time.time() - t0 < args.seconds:
                master.signal(signal.SIGSTOP)
                time.sleep(2.5)
                master.signal(signal.SIGCONT)
                time.sleep(2.5)
                flaps += 1
        else:
            def addr(m):
                return f"{m['master']['host']}:{m['master']['port']}"

            for _ in range(args.failovers):
                before_addr = addr(master_info())
                deadline = time.time() + 30
                while True:
                    # Refused while the previous one's replica is still syncing: retry.
                    code, _, err = ctl(args.bin, eps, "failover", "mymaster")
                    if code == 0:
                        break
                    if time.time() > deadline:
                        sys.exit(f"failover refused: {err}")
                    time.sleep(0.5)
                deadline = time.time() + 60
                while time.time() < deadline:
                    m = master_info()
                    if m and addr(m) != before_addr and not m.get("failover"):
                        break
                    time.sleep(0.2)
                else:
                    sys.exit("failover did not finish")
                failovers += 1
        elapsed = time.time() - t0
        after = [proc_io(p.pid) for p in nodes]
        log_after = [os.path.getsize(f) for f in logs]
        a1 = applied()
        entries = a1 - a0
        what = {"idle": "idle", "flap": f"{flaps} flaps", "failover": f"{failovers} failovers"}[args.mode]
        print(f"masters {args.masters}, {what} in {elapsed:.0f} s, {entries} entries applied "
              f"({entries * 3600 / elapsed:.0f}/h)")
        # The node's own log (stderr, to a file here) is part of wchar; shown apart.
        print(f"{'node':<6}{'wchar/h':>16}{'write_bytes/h':>16}{'wchar/entry':>14}{'of it log/h':>14}")
        for i, (b, a) in enumerate(zip(before, after)):
            w = (a["wchar"] - b["wchar"]) * 3600 / elapsed
            d = (a["write_bytes"] - b["write_bytes"]) * 3600 / elapsed
            per = (a["wchar"] - b["wchar"]) / entries if entries else float("nan")
            lg = (log_after[i] - log_before[i]) * 3600 / elapsed
            line = f"{i + 1:<6}{w / 1e6:>13.1f} MB{d / 1e6:>13.1f} MB{per:>12.0f} B{lg / 1e6:>11.1f} MB"
            if failovers:
                line += f"{(a['write_bytes'] - b['write_bytes']) / failovers / 1e3:>12.0f} KB/failover"
            print(line)
    finally:
        for p in procs:
            p.signal(signal.SIGCONT)
            p.kill9()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
