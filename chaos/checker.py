"""Checks a recorded chaos history. Pure: a list of event dicts in, a result dict out.

A history is a list of dicts, each with a "kind" and times in seconds since the run started:

  {"kind": "write", "client": str, "key": str, "val": str, "t0": s, "t1": s,
   "ok": bool, "node": "ip:port" or None, "err": str or None, "indeterminate": bool}
      one SET by a workload client; node is the instance that acknowledged it (or was asked)
  {"kind": "role", "t": s, "node": "ip:port", "role": "master"|"slave"|"down",
   "master": "ip:port" or None, "link": "up"|"down"|None}
      one ROLE sample of one Redis instance
  {"kind": "addr", "t0": s, "t1": s, "sentinel": "ip:port", "addr": "ip:port" or None,
   "err": str or None, "epoch": int or None}
      one answer to SENTINEL get-master-addr-by-name (epoch when known)
  {"kind": "event", "t": s, "sentinel": "ip:port", "channel": str, "data": str}
      a Pub/Sub event published by a coordinator (+switch-master, ...)
  {"kind": "nemesis", "t": s, "op": str, "phase": "start"|"end"|"heal"|"info", "detail": any}
      fault injection; phase "heal" marks the moment every fault was lifted
  {"kind": "final", "t": s, "master": "ip:port", "values": {key: val}}
      every written key read back from the final master after convergence
  {"kind": "meta", "initial_master": "ip:port", "instances": [...], "sentinels": [...]}

Definitions (the README explains them with examples):
  * committed switch: the earliest moment any coordinator served a new address, either in a
    get-master-addr-by-name answer or in a +switch-master event. The first master is the
    configured one, committed at time 0.
  * master of record at time t: the address of the latest committed switch at or before t.
  * split brain: two or more instances answering ROLE=master at the same time. Each sample holds
    until the next sample of the same instance; "down" is never writable.
  * lost write: an acknowledged SET whose value is not on the final master.
      - explained by async replication: acknowledged by the master of record, which then lost
        its office in a committed switch, and acknowledged no earlier than `async_slack` before
        the fault that preceded that switch started.
      - split-brain write: acknowledged by an instance that was not the master of record.
      - unexplained: anything else (for example a master restarted empty and resynced over its
        replicas, or a write long acknowledged before any fault).
  * stale address: an answer naming an address other than the master of record, for a request
    sent more than `stale_grace` after that switch was committed.
  * convergence: the first time after the heal from which, to the end of the history, exactly one
    instance is master (the master of record), every other reachable instance replicates from it,
    and every coordinator that answers serves that address.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

DEFAULTS = {
    # Requests sent this long after a committed switch must see the new address.
    "stale_grace": 0.5,
    # Writes this long before a fault started may still be unreplicated when it hits.
    "async_slack": 1.0,
    # A gap between successful writes longer than this counts as unavailability.
    "gap": 0.25,
    # Split brain this long after the heal is tolerated (one fencing probe).
    "fence_grace": 1.0,
}


def _by_kind(history):
    out = defaultdict(list)
    for e in history:
        out[e["kind"]].append(e)
    return out


def switch_timeline(history):
    """[(time, addr)] of committed switches, first entry the initial master at 0."""
    k = _by_kind(history)
    meta = (k.get("meta") or [{}])[0]
    initial = meta.get("initial_master")
    sightings = []
    for a in k.get("addr", []):
        if a.get("addr"):
            sightings.append((a["t1"], a["addr"]))
    for ev in k.get("event", []):
        if ev.get("channel") == "+switch-master":
            parts = ev.get("data", "").split()
            if len(parts) >= 5:
                sightings.append((ev["t"], f"{parts[3]}:{parts[4]}"))
    sightings.sort()
    timeline = []
    if initial:
        timeline.append((0.0, initial))
    # Any new address seen for the first time after the current one is a new switch. An address
    # that returns (failover back to an old master) counts again once another one was current.
    for t, addr in sightings:
        if not timeline:
            timeline.append((t, addr))
        elif addr != timeline[-1][1]:
            # Ignore late sightings of an address that was current before: those are stale answers,
            # not switches back. A real switch back shows as an address seen after a newer one and
            # is confirmed by +switch-master naming it, so accept only event-confirmed returns.
            if any(a == addr for _, a in timeline) and not _confirmed_return(k, addr, t):
                continue
            timeline.append((t, addr))
    return timeline


def _confirmed_return(k, addr, t):
    for ev in k.get("event", []):
        if ev.get("channel") != "+switch-master" or abs(ev["t"] - t) > 1e-9:
            continue
        parts = ev.get("data", "").split()
        if len(parts) >= 5 and f"{parts[3]}:{parts[4]}" == addr:
            return True
    return False


def master_of_record(timeline, t):
    times = [x[0] for x in timeline]
    i = bisect.bisect_right(times, t) - 1
    return timeline[i][1] if i >= 0 else None


def _intervals(samples, end):
    """Per instance: [(start, stop, sample)] where each sample holds until the next one."""
    per = defaultdict(list)
    for s in sorted(samples, key=lambda s: s["t"]):
        per[s["node"]].append(s)
    out = {}
    for node, ss in per.items():
        iv = []
        for i, s in enumerate(ss):
            stop = ss[i + 1]["t"] if i + 1 < len(ss) else end
            iv.append((s["t"], stop, s))
        out[node] = iv
    return out


def split_brain(history, end, heal=None):
    """Intervals where two or more instances were writable masters at once."""
    k = _by_kind(history)
    iv = _intervals(k.get("role", []), end)
    points = []
    for node, xs in iv.items():
        # Consecutive master samples of one instance form one interval.
        merged = []
        for a, b, s in xs:
            if s["role"] != "master" or b <= a:
                continue
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            points.append((a, 1, node))
            points.append((b, -1, node))
    # Ends before starts at the same instant so touching intervals do not overlap.
    points.sort(key=lambda p: (p[0], p[1]))
    active = set()
    spans = []
    start = None
    for t, d, node in points:
        if d == 1:
            active.add(node)
        else:
            active.discard(node)
        if len(active) >= 2 and start is None:
            start = (t, sorted(active))
        elif len(active) < 2 and start is not None:
            spans.append({"start": start[0], "end": t, "nodes": start[1]})
            start = None
    if start is not None:
        spans.append({"start": start[0], "end": end, "nodes": start[1]})
    total = sum(s["end"] - s["start"] for s in spans)
    after = 0.0
    if heal is not None:
        for s in spans:
            after += max(0.0, s["end"] - max(s["start"], heal))
    return {
        "spans": spans,
        "total_ms": round(total * 1000, 1),
        "max_ms": round(max((s["end"] - s["start"] for s in spans), default=0.0) * 1000, 1),
        "after_heal_ms": round(after * 1000, 1),
    }


def lost_writes(history, timeline, opts):
    k = _by_kind(history)
    finals = k.get("final", [])
    if not finals:
        return {"checked": False, "why": "no final read (the cluster never converged to one master)"}
    final = finals[-1]["values"]
    faults = sorted(e["t"] for e in k.get("nemesis", []) if e.get("phase") == "start")
    acked = [w for w in k.get("write", []) if w["ok"]]
    lost = [w for w in acked if final.get(w["key"]) != w["val"]]
    async_, split, unexplained = [], [], []
    for w in lost:
        rec = master_of_record(timeline, w["t1"])
        if w.get("node") != rec:
            split.append(w)
            continue
        # The switch that took the office away from this master, if any.
        nxt = next(((t, a) for t, a in timeline if t > w["t1"] and a != rec), None)
        if nxt is None:
            unexplained.append(w)
            continue
        fault = max((f for f in faults if f <= nxt[0]), default=None)
        if fault is not None and w["t1"] >= fault - opts["async_slack"]:
            async_.append(w)
        else:
            unexplained.append(w)
    return {
        "checked": True,
        "acked": len(acked),
        "lost": len(lost),
        "lost_async": len(async_),
        "lost_split_brain": len(split),
        "lost_unexplained": len(unexplained),
        "examples": [
            {"key": w["key"], "node": w.get("node"), "t1": round(w["t1"], 3)}
            for w in (unexplained + split + async_)[:5]
        ],
    }


def stale_addresses(history, timeline, opts):
    k = _by_kind(history)
    times = [x[0] for x in timeline]
    stale = []
    for a in k.get("addr", []):
        if not a.get("addr"):
            continue
        i = bisect.bisect_right(times, a["t0"]) - 1
        if i < 0:
            continue
        current = timeline[i][1]
        if a["addr"] == current:
            continue
        # Inside the grace window the previous address is still acceptable.
        if a["t0"] - timeline[i][0] <= opts["stale_grace"] and i > 0 and a["addr"] == timeline[i - 1][1]:
            continue
        # An address newer than the request (the switch landed while it was in flight) is fine.
        if any(addr == a["addr"] and t <= a["t1"] for t, addr in timeline[i + 1 :]):
            continue
        stale.append(a)
    per_node = defaultdict(int)
    for a in stale:
        per_node[a["sentinel"]] += 1
    # How long each switch took to reach every coordinator (first answer of the new address).
    lag = []
    addrs = k.get("addr", [])
    for idx, (t, addr) in enumerate(timeline[1:], start=1):
        until = timeline[idx + 1][0] if idx + 1 < len(timeline) else float("inf")
        first = {}
        for a in addrs:
            if a.get("addr") == addr and t <= a["t1"] < until:
                first.setdefault(a["sentinel"], a["t1"])
        lag.append({"addr": addr, "t": round(t, 3), "max_ms": round((max(first.values(), default=t) - t) * 1000, 1)})
    return {
        "stale": len(stale),
        "per_sentinel": dict(per_node),
        "examples": [
            {"sentinel": a["sentinel"], "t0": round(a["t0"], 3), "addr": a["addr"]} for a in stale[:5]
        ],
        "propagation": lag,
    }


def promotions(history, timeline):
    """Promotions seen in ROLE samples, and the addresses served per epoch."""
    k = _by_kind(history)
    per = defaultdict(list)
    for s in sorted(k.get("role", []), key=lambda s: s["t"]):
        per[s["node"]].append(s)
    promos = []
    for node, ss in per.items():
        last_known = None
        for s in ss:
            if s["role"] == "down":
                continue
            if s["role"] == "master" and last_known == "slave":
                promos.append({"t": s["t"], "node": node})
            last_known = s["role"]
    promos.sort(key=lambda p: p["t"])
    by_epoch = defaultdict(set)
    for a in k.get("addr", []):
        if a.get("addr") and a.get("epoch") is not None:
            by_epoch[a["epoch"]].add(a["addr"])
    multi = {e: sorted(v) for e, v in by_epoch.items() if len(v) > 1}
    # Promotions of an instance that never became the master of record are orphans (a second
    # master in the same failover, or a promotion no coordinator committed).
    recorded = {a for _, a in timeline}
    orphans = [p for p in promos if p["node"] not in recorded]
    return {
        "promotions": len(promos),
        "switches": max(0, len(timeline) - 1),
        "epochs": sorted(by_epoch),
        "epochs_with_several_masters": multi,
        "orphan_promotions": orphans,
    }


def convergence(history, timeline, heal, end):
    """Seconds from the heal until roles and answers agree for good, or None."""
    if heal is None:
        return None
    k = _by_kind(history)
    samples = sorted(
        [("role", s["t"], s) for s in k.get("role", [])] + [("addr", a["t1"], a) for a in k.get("addr", [])],
        key=lambda x: x[1],
    )
    role = {}
    addr = {}
    bad_since_last = None
    good_from = None
    for kind, t, s in samples:
        if kind == "role":
            role[s["node"]] = s
        else:
            addr[s["sentinel"]] = s
        if t < heal:
            continue
        rec = master_of_record(timeline, t)
        ok = _consistent(role, addr, rec)
        if ok and good_from is None:
            good_from = t
        elif not ok:
            good_from = None
            bad_since_last = t
    if good_from is None:
        return None
    del bad_since_last
    return round(max(0.0, good_from - heal), 3)


def _consistent(role, addr, rec):
    masters = [n for n, s in role.items() if s["role"] == "master"]
    if masters != [rec]:
        return False
    for n, s in role.items():
        if n == rec or s["role"] == "down":
            continue
        if s["role"] != "slave" or s.get("master") != rec:
            return False
    for a in addr.values():
        if a.get("addr") is not None and a["addr"] != rec:
            return False
    return True


def unavailability(history, end, opts):
    """Per client: total time without a successful write in gaps longer than `gap`."""
    k = _by_kind(history)
    per = defaultdict(list)
    for w in k.get("write", []):
        per[w["client"]].append(w)
    out = {}
    for client, ws in per.items():
        oks = sorted(w["t1"] for w in ws if w["ok"])
        start = min(w["t0"] for w in ws)
        gaps = []
        prev = start
        for t in oks + [end]:
            if t - prev > opts["gap"]:
                gaps.append((prev, t))
            prev = t
        out[client] = {
            "ok": len(oks),
            "errors": sum(1 for w in ws if not w["ok"]),
            "unavailable_ms": round(sum(b - a for a, b in gaps) * 1000, 1),
            "longest_gap_ms": round(max((b - a for a, b in gaps), default=0.0) * 1000, 1),
            "gaps": [(round(a, 3), round(b, 3)) for a, b in gaps],
        }
    return out


def check(history, **overrides):
    opts = dict(DEFAULTS, **overrides)
    k = _by_kind(history)
    ts = [e.get("t", e.get("t1", 0.0)) for e in history]
    end = max([t for t in ts if t is not None] + [0.0])
    heals = [e["t"] for e in k.get("nemesis", []) if e.get("phase") == "heal"]
    heal = max(heals) if heals else None
    timeline = switch_timeline(history)
    sb = split_brain(history, end, heal)
    sb["after_heal_beyond_grace_ms"] = round(max(0.0, sb["after_heal_ms"] - opts["fence_grace"] * 1000), 1)
    result = {
        "timeline": [(round(t, 3), a) for t, a in timeline],
        "split_brain": sb,
        "writes": lost_writes(history, timeline, opts),
        "stale": stale_addresses(history, timeline, opts),
        "promotions": promotions(history, timeline),
        "converged_after_s": convergence(history, timeline, heal, end),
        "unavailability": unavailability(history, end, opts),
        "heal_t": heal,
        "options": opts,
    }
    result["violations"] = violations(result)
    return result


def violations(r):
    """The invariants a safe coordinator keeps whenever a majority of it survives."""
    v = []
    if r["split_brain"]["after_heal_beyond_grace_ms"] > 0:
        v.append(f"split brain after heal: {r['split_brain']['after_heal_ms']} ms")
    w = r["writes"]
    if w.get("checked"):
        if w["lost_unexplained"]:
            v.append(f"{w['lost_unexplained']} acknowledged writes lost beyond async replication")
        if w["lost_split_brain"]:
            v.append(f"{w['lost_split_brain']} acknowledged writes lost on a deposed master")
    else:
        v.append("lost writes not checked: " + w.get("why", "?"))
    if r["stale"]["stale"]:
        v.append(f"{r['stale']['stale']} stale addresses after a committed switch")
    p = r["promotions"]
    if p["epochs_with_several_masters"]:
        v.append(f"several masters in one epoch: {p['epochs_with_several_masters']}")
    if p["orphan_promotions"]:
        v.append(f"{len(p['orphan_promotions'])} promotions never committed")
    if r["heal_t"] is not None and r["converged_after_s"] is None:
        v.append("never converged after the heal")
    return v
