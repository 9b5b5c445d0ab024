#!/usr/bin/env python3
"""Where the time of a scale-benchmark failover goes, from the logs bench/scale.py --keep-logs
kept (JSON lines of the 3 nodes and the kill time).

Per killed master, in ms after the kill (wall clocks of one machine):
  sdown1/sdown2  first and second node's local SDOWN (the probe's "+sdown (local)"); the
                 second one completes a quorum of 2 (down_after after the last good reply)
  odown          the leader applied the entry that made it objectively down ("+odown")
  decide         the leader's executor chose a candidate and proposed FailoverStart
  start          the leader applied FailoverStart ("+try-failover" event)
  noone          the executor sent REPLICAOF NO ONE
  promoted       ROLE said master; FailoverDone proposed
  switch_l       the leader applied FailoverDone ("+switch-master")
  switch_all     the last of the 3 nodes applied it
  seen           the benchmark's client saw the new address on all 3 nodes

Usage: bench/scale_breakdown.py DIR/N200
"""
import json, os, statistics, sys
from datetime import datetime, timezone

STAGES = ["sdown1", "sdown2", "odown", "decide", "start", "noone", "promoted", "switch_l",
          "switch_all", "seen"]


def wall(s):
    # 2026-11-29T21:27:00.123456Z (UTC)
    return datetime.strptime(s.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()


def span_field(rec, key):
    for sp in [rec.get("span") or {}] + list(reversed(rec.get("spans") or [])):
        if key in sp:
            return sp[key]
    return None


def main():
    d = sys.argv[1]
    meta = json.load(open(os.path.join(d, "meta.json")))
    t0 = meta["kill_wall"]
    killed = meta["killed"]
    addr_of = {f"127.0.0.1:{v[0]}": nm for nm, v in killed.items()}
    t = {nm: {"sdown": []} for nm in killed}
    applied = {nm: {} for nm in killed}  # event -> {node: ms}
    for ni in range(3):
        for line in open(os.path.join(d, f"node{ni+1}.log"), errors="replace"):
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            ms = (wall(r["timestamp"]) - t0) * 1000
            if ms < -1:
                continue
            msg = r.get("message", "")
            target = r.get("target", "")
            if msg == "+sdown (local)" and span_field(r, "addr") in addr_of:
                t[addr_of[span_field(r, "addr")]]["sdown"].append(ms)
            elif "event" in r and r.get("master") in killed:
                applied[r["master"]].setdefault(r["event"], {}).setdefault(ni, ms)
            elif target.endswith("failover::executor"):
                nm = span_field(r, "master")
                if nm not in killed:
                    continue
                key = {"+try-failover": "decide", "+failover-state-send-slaveof-noone": "noone",
                       "+promoted-slave": "promoted"}.get(msg)
                if key and key not in t[nm]:
                    t[nm][key] = ms
                    t[nm]["leader"] = ni
    rows = {}
    for nm in killed:
        x, a = t[nm], applied[nm]
        sd = sorted(x["sdown"])
        ldr = x.get("leader")
        row = {
            "sdown1": sd[0] if sd else None,
            "sdown2": sd[1] if len(sd) > 1 else None,
            "odown": a.get("+odown", {}).get(ldr),
            "decide": x.get("decide"),
            "start": a.get("+try-failover", {}).get(ldr),
            "noone": x.get("noone"),
            "promoted": x.get("promoted"),
            "switch_l": a.get("+switch-master", {}).get(ldr),
            "switch_all": max(a["+switch-master"].values())
            if len(a.get("+switch-master", {})) == 3 else None,
            "seen": max(meta["seen_ms"][nm]) if all(meta["seen_ms"][nm]) else None,
        }
        rows[nm] = row
    print(f"{d}: ms after the kill (down_after {meta['down_after_ms']} ms)")
    print("master  " + " ".join(f"{s:>10}" for s in STAGES))
    for nm, row in sorted(rows.items()):
        print(f"{nm:7} " + " ".join(f"{row[s]:10.1f}" if row[s] is not None else "         -"
                                     for s in STAGES))
    print("\nstage (from the previous one)   median     max   | all masters reached it at")
    prev = None
    for s in STAGES:
        vals = [r[s] for r in rows.values() if r[s] is not None]
        if not vals:
            continue
        if prev:
            deltas = [r[s] - r[prev] for r in rows.values()
                      if r[s] is not None and r[prev] is not None]
            dm = f"{statistics.median(deltas):7.1f} {max(deltas):7.1f}"
        else:
            dm = f"{'':7} {'':7}"
        print(f"  {prev or 'kill':>10} -> {s:<12} {dm}   | {max(vals):7.1f}")
        prev = s


if __name__ == "__main__":
    main()
