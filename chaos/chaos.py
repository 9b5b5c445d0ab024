#!/usr/bin/env python3
"""Chaos suite: faults against a three-host Redis deployment coordinated by raft-sentinel or by
real redis-sentinel, with a workload, a recorded history and a checker.

    python3 chaos/chaos.py --target both --runs 3             # every scenario, both targets
    python3 chaos/chaos.py --smoke                            # the CI subset
    python3 chaos/chaos.py --scenario kill-master --seed 7    # replay one run

See chaos/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import checker  # noqa: E402
import report  # noqa: E402
from deploy import RaftSentinel, RedisSentinel, Timing  # noqa: E402
from lab import Lab, namespaces_available  # noqa: E402
from resp import Conn  # noqa: E402
from scenarios import SCENARIOS, SMOKE, Ctx  # noqa: E402
from workload import AddrPoller, EventListener, History, PyWriter, RawWriter, RoleSampler  # noqa: E402

CURRENT = {"lab": None}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build():
    log("building raft-sentinel (cargo build)")
    subprocess.run(["cargo", "build", "--quiet", "--bin", "raft-sentinel"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "debug", "raft-sentinel")


def final_read(d, hist, keys):
    """Reads every written key from the master of record (None when it cannot)."""
    tl = checker.switch_timeline(hist.snapshot())
    master = tl[-1][1]
    host, port = master.split(":")[0], int(master.split(":")[1])
    values = {}
    try:
        c = Conn(host, port, 2.0)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            r = c.call("MGET", *chunk)
            if not isinstance(r, list):
                return None
            for k, v in zip(chunk, r):
                if v is not None:
                    values[k] = v
        c.close()
    except OSError:
        return None
    hist.add({"kind": "final", "t": hist.now(), "master": master, "values": values})
    return master


def converged(hist, d):
    snap = hist.snapshot()
    tl = checker.switch_timeline(snap)
    rec = tl[-1][1]
    role, addr = {}, {}
    for e in snap:
        if e["kind"] == "role":
            role[e["node"]] = e
        elif e["kind"] == "addr":
            addr[e["sentinel"]] = e
    return checker._consistent(role, addr, rec)


def run_one(args, binary, target, scenario, seed, rep, outdir):
    sc = SCENARIOS[scenario]
    rng = random.Random(seed)
    mode = "netns" if args.netns else "loopback"
    if sc.needs_partitions and mode != "netns":
        log(f"  {scenario}: skipped, partitions need network namespaces")
        return None
    rundir = os.path.join(outdir, f"{target}-{scenario}-{rep}")
    os.makedirs(rundir, exist_ok=True)
    lab = Lab(3, mode, f"ch{os.getpid() % 1000}r")
    CURRENT["lab"] = lab
    timing = Timing(down_after_ms=args.down_after_ms, failover_timeout_ms=args.failover_timeout_ms)
    cls = RaftSentinel if target == "raft-sentinel" else RedisSentinel
    d = cls(lab, os.path.join(rundir, "data"), timing, binary=binary)
    stop = threading.Event()
    workers = []
    hist = None
    started = time.monotonic()
    error = None
    try:
        lab.enter_client_namespace()
        d.start()
        hist = History()
        sentinels = [d.sentinel_addr(i) for i in (1, 2, 3)]
        instances = [d.redis_addr(i) for i in (1, 2, 3)]
        hist.add({"kind": "meta", "initial_master": d.redis_addr(1), "instances": instances,
                  "sentinels": sentinels, "target": target, "scenario": scenario, "seed": seed, "mode": mode})
        for s in sentinels:
            workers += [AddrPoller(hist, stop, s), EventListener(hist, stop, s)]
        for i in instances:
            workers.append(RoleSampler(hist, stop, i))
        writers = [PyWriter(hist, stop, sentinels, "py"), RawWriter(hist, stop, sentinels, "raw")]
        workers += writers
        for w in workers:
            w.start()
        time.sleep(2.0)
        sc.run(Ctx(d, lab, hist, rng, timing))
        # Wait for agreement (held for a second), bounded.
        end = time.monotonic() + args.converge_timeout
        stable_since = None
        while time.monotonic() < end:
            if converged(hist, d):
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 1.0:
                    break
            else:
                stable_since = None
            time.sleep(0.1)
        stop.set()
        for w in workers:
            w.join(timeout=3)
        keys = [k for w in writers for k in w.keys]
        final_read(d, hist, keys)
    except Exception as e:  # a harness failure is recorded, never hidden
        error = f"{type(e).__name__}: {e}"
        log(f"  harness error: {error}")
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=3)
        lab.destroy()
        CURRENT["lab"] = None
    if hist is None:
        return {"target": target, "scenario": scenario, "rep": rep, "seed": seed, "error": error,
                "violations": [f"harness error: {error}"], "check": None}
    events = hist.snapshot()
    with open(os.path.join(rundir, "history.jsonl"), "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    res = checker.check(events)
    viol = list(res["violations"])
    if not sc.majority_survives:
        viol = [v for v in viol if "converged" in v or "not checked" in v]
    if sc.zero_loss and res["writes"].get("lost"):
        viol.append(f"{res['writes']['lost']} acknowledged writes lost where zero loss is expected")
    if sc.no_promotion and res["promotions"]["promotions"]:
        viol.append(f"{res['promotions']['promotions']} promotions of a healthy master")
    if error:
        viol.append(f"harness error: {error}")
    out = {"target": target, "scenario": scenario, "rep": rep, "seed": seed, "mode": mode,
           "duration_s": round(time.monotonic() - started, 1), "error": error,
           "nemesis": [e for e in events if e["kind"] == "nemesis"], "check": res, "violations": viol}
    with open(os.path.join(rundir, "result.json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    with open(os.path.join(rundir, "timeline.svg"), "w") as f:
        f.write(report.timeline_svg(events, res, f"{target} / {scenario} / run {rep} / seed {seed}"))
    _keep_logs(d, rundir)
    return out


def _keep_logs(d, rundir):
    # Data files are large and useless after the check; the logs stay for the findings.
    import shutil

    data = os.path.join(rundir, "data")
    logs = os.path.join(rundir, "logs")
    os.makedirs(logs, exist_ok=True)
    for root, _, files in os.walk(data):
        for f in files:
            if f.endswith(".log"):
                shutil.copy(os.path.join(root, f), os.path.join(logs, os.path.basename(root) + "-" + f))
    shutil.rmtree(data, ignore_errors=True)


def write_report(args, results, extra):
    ok_results = [r for r in results if r.get("check")]
    summary = report.summarize(ok_results) if ok_results else {}
    rep_json = dict(extra)
    rep_json["summary"] = summary
    rep_json["runs"] = [{k: r[k] for k in ("target", "scenario", "rep", "seed", "violations")} |
                        ({"numbers": report.run_row(r)} if r.get("check") else {}) for r in results]
    os.makedirs(args.out, exist_ok=True)
    for path in [os.path.join(args.out, "report.json")] + ([args.report] if args.report else []):
        with open(path, "w") as f:
            json.dump(rep_json, f, indent=1, default=str)
    print(report.table(summary))
    bad = [r for r in results if r["target"] == "raft-sentinel" and r["violations"]]
    if bad:
        print("\nraft-sentinel violations:")
        for r in bad:
            print(f"  {r['scenario']} run {r['rep']} seed {r['seed']}: {'; '.join(r['violations'])}")
    return bad


def summarize_dirs(args):
    results = []
    for top in args.summarize:
        for name in sorted(os.listdir(top)):
            path = os.path.join(top, name, "result.json")
            if os.path.exists(path):
                with open(path) as f:
                    results.append(json.load(f))
    order = list(SCENARIOS)
    results.sort(key=lambda r: (order.index(r["scenario"]), r["target"], r["rep"]))
    write_report(args, results, {"sources": args.summarize, "down_after_ms": args.down_after_ms,
                                 "failover_timeout_ms": args.failover_timeout_ms})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=["raft", "sentinel", "both"], default="raft")
    ap.add_argument("--scenario", action="append", help=f"one of: {', '.join(SCENARIOS)} (repeatable)")
    ap.add_argument("--runs", type=int, default=1, help="repetitions of each scenario")
    ap.add_argument("--seed", type=int, default=1, help="base seed; run k of a scenario uses seed + k")
    ap.add_argument("--smoke", action="store_true", help=f"CI subset: {', '.join(SMOKE)}, raft-sentinel only")
    ap.add_argument("--out", default=os.path.join(HERE, "runs", "latest"))
    ap.add_argument("--report", help="also write the JSON report here")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--loopback", action="store_true", help="do not use network namespaces")
    ap.add_argument("--down-after-ms", type=int, default=1000)
    ap.add_argument("--failover-timeout-ms", type=int, default=5000)
    ap.add_argument("--converge-timeout", type=float, default=25.0)
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when raft-sentinel violates an invariant in a scenario a majority survives")
    ap.add_argument("--summarize", nargs="+", metavar="DIR",
                    help="rebuild the table and report.json from the result.json files under these run "
                         "directories (for example several partial runs), without running anything")
    args = ap.parse_args()
    # Redis opens its log file after changing into its data directory: paths must be absolute.
    args.out = os.path.abspath(args.out)
    if args.summarize:
        return summarize_dirs(args)

    if os.geteuid() != 0 and not args.loopback:
        log("not root: network namespaces unavailable")
        args.loopback = True
    args.netns = not args.loopback and namespaces_available()
    if not args.netns:
        log("network namespaces cannot be created: running on 127.x addresses; partition and "
            "lagging-link scenarios are unavailable and will be skipped")
    scenarios = args.scenario or (SMOKE if args.smoke else list(SCENARIOS))
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}")
    targets = {"raft": ["raft-sentinel"], "sentinel": ["redis-sentinel"],
               "both": ["raft-sentinel", "redis-sentinel"]}[args.target]
    if args.smoke:
        targets = ["raft-sentinel"]
    binary = os.path.join(ROOT, "target", "debug", "raft-sentinel")
    if "raft-sentinel" in targets and not args.no_build:
        binary = build()

    def on_signal(signum, _frame):
        log(f"signal {signum}: stopping every process and removing namespaces")
        if CURRENT["lab"] is not None:
            CURRENT["lab"].destroy()
        sys.exit(130)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    os.makedirs(args.out, exist_ok=True)
    results = []
    t_start = time.monotonic()
    # Repetition-major: a run cut short still has every scenario at least once.
    for rep in range(1, args.runs + 1):
        seed = args.seed + rep - 1
        for scenario in scenarios:
            for target in targets:
                log(f"== {target} {scenario} run {rep} seed {seed}")
                r = run_one(args, binary, target, scenario, seed, rep, args.out)
                if r is None:
                    continue
                results.append(r)
                log(f"   {'ok' if not r['violations'] else 'VIOLATIONS: ' + '; '.join(r['violations'])}"
                    f" ({r.get('duration_s', '?')} s)")
    bad = write_report(args, results, {
        "mode": "netns" if args.netns else "loopback",
        "down_after_ms": args.down_after_ms,
        "failover_timeout_ms": args.failover_timeout_ms,
        "runs_per_scenario": args.runs,
        "base_seed": args.seed,
        "elapsed_s": round(time.monotonic() - t_start, 1),
    })
    print(f"\nreport: {os.path.join(args.out, 'report.json')}; per run: history.jsonl, result.json, timeline.svg")
    if args.strict and bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
