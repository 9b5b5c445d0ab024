"""Outputs: an SVG timeline per run, and the side-by-side summary table."""

from __future__ import annotations

import html
from collections import defaultdict

ROLE_COLOR = {"master": "#d62728", "slave": "#1f77b4", "down": "#bbbbbb"}
PALETTE = ["#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22"]


def timeline_svg(history, result, title):
    ev = defaultdict(list)
    for e in history:
        ev[e["kind"]].append(e)
    end = max([e.get("t", e.get("t1", 0)) or 0 for e in history] + [1.0])
    meta = (ev.get("meta") or [{}])[0]
    instances = meta.get("instances", [])
    sentinels = meta.get("sentinels", [])
    clients = sorted({w["client"] for w in ev.get("write", [])})
    lanes = [("redis " + i, "role", i) for i in instances]
    lanes += [("coord " + s, "addr", s) for s in sentinels]
    lanes += [("writes " + c, "write", c) for c in clients]
    left, width, lane_h = 190, 900, 22
    top = 40
    height = top + lane_h * len(lanes) + 80
    xs = lambda t: left + width * (t / end)  # noqa: E731
    addr_color = {}
    for _, a in result.get("timeline", []):
        addr_color.setdefault(a, PALETTE[len(addr_color) % len(PALETTE)])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
           'font-family="monospace" font-size="11">',
           f'<text x="10" y="18" font-size="13">{html.escape(title)}</text>']
    for n, (label, kind, key) in enumerate(lanes):
        y = top + n * lane_h
        out.append(f'<text x="10" y="{y + 14}">{html.escape(label)}</text>')
        if kind == "role":
            ss = sorted((e for e in ev["role"] if e["node"] == key), key=lambda e: e["t"])
            for i, s in enumerate(ss):
                b = ss[i + 1]["t"] if i + 1 < len(ss) else end
                out.append(_rect(xs(s["t"]), y, xs(b) - xs(s["t"]), lane_h - 4, ROLE_COLOR[s["role"]]))
        elif kind == "addr":
            ss = sorted((e for e in ev["addr"] if e["sentinel"] == key), key=lambda e: e["t0"])
            for i, s in enumerate(ss):
                b = ss[i + 1]["t0"] if i + 1 < len(ss) else end
                c = addr_color.setdefault(s["addr"], PALETTE[len(addr_color) % len(PALETTE)]) if s["addr"] else "#eeeeee"
                out.append(_rect(xs(s["t0"]), y, xs(b) - xs(s["t0"]), lane_h - 4, c))
        else:
            # 100 ms buckets: green all acknowledged, red any failure.
            buckets = defaultdict(lambda: [0, 0])
            for w in ev["write"]:
                if w["client"] == key:
                    buckets[int(w["t1"] * 10)][0 if w["ok"] else 1] += 1
            for b, (_, bad) in buckets.items():
                out.append(_rect(xs(b / 10), y, max(1.0, xs(0.1) - xs(0)), lane_h - 4,
                                 "#d62728" if bad else "#2ca02c"))
    y_end = top + lane_h * len(lanes)
    for e in ev.get("nemesis", []):
        x = xs(e["t"])
        color = {"start": "#000000", "heal": "#2ca02c"}.get(e["phase"], "#888888")
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{y_end}" stroke="{color}" '
                   'stroke-dasharray="4,3"/>')
        out.append(f'<text x="{x + 2:.1f}" y="{top - 8}" fill="{color}" font-size="9">'
                   f'{html.escape(e["op"][:28])}</text>')
    for t, a in result.get("timeline", [])[1:]:
        x = xs(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{y_end}" stroke="{addr_color[a]}" '
                   'stroke-width="2"/>')
    for s in result.get("split_brain", {}).get("spans", []):
        out.append(_rect(xs(s["start"]), y_end + 4, max(2.0, xs(s["end"]) - xs(s["start"])), 8, "#000000"))
    # Axis and legend.
    for sec in range(0, int(end) + 1, 5):
        out.append(f'<text x="{xs(sec):.1f}" y="{y_end + 28}">{sec}s</text>')
    legend = [("master", ROLE_COLOR["master"]), ("replica", ROLE_COLOR["slave"]), ("down", ROLE_COLOR["down"]),
              ("write ok", "#2ca02c"), ("write failed", "#d62728"), ("split brain", "#000000")]
    legend += [(f"serves {a}", c) for a, c in addr_color.items() if a]
    x = 10
    for label, c in legend:
        out.append(_rect(x, y_end + 40, 10, 10, c))
        out.append(f'<text x="{x + 14}" y="{y_end + 49}">{html.escape(label)}</text>')
        x += 24 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(out)


def _rect(x, y, w, h, color):
    return f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{h}" fill="{color}"/>'


def run_row(r):
    """The numbers of one run, flat."""
    c = r["check"]
    w = c["writes"]
    unav = c["unavailability"]
    return {
        "split_brain_ms": c["split_brain"]["total_ms"],
        "split_brain_after_heal_ms": c["split_brain"]["after_heal_ms"],
        "acked": w.get("acked", 0),
        "lost": w.get("lost", None),
        "lost_async": w.get("lost_async", None),
        "lost_split": w.get("lost_split_brain", None),
        "lost_unexplained": w.get("lost_unexplained", None),
        "stale": c["stale"]["stale"],
        "promotions": c["promotions"]["promotions"],
        "switches": c["promotions"]["switches"],
        "converge_s": c["converged_after_s"],
        "unavail_ms": max((u["unavailable_ms"] for u in unav.values()), default=0.0),
        "violations": len(r["violations"]),
    }


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(results):
    """Per scenario and target: means over repetitions (max for violations)."""
    groups = defaultdict(list)
    for r in results:
        groups[(r["scenario"], r["target"])].append(r)
    out = {}
    for (sc, tg), rs in groups.items():
        rows = [run_row(r) for r in rs]
        agg = {k: _mean([row[k] for row in rows]) for k in rows[0] if k != "violations"}
        agg["violations"] = sum(row["violations"] for row in rows)
        agg["runs"] = len(rs)
        agg["never_converged"] = sum(1 for row in rows if row["converge_s"] is None)
        agg["lost_total"] = sum(row["lost"] or 0 for row in rows)
        out.setdefault(sc, {})[tg] = agg
    return out


def _fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _ratio(a, b):
    if a is None or b is None:
        return "-"
    if b == 0:
        return "=" if a == 0 else "inf"
    return f"{a / b:.2f}"


def table(summary):
    cols = [("lost", "lost", 1), ("lost_unexplained", "unexpl", 1), ("split_brain_ms", "splitms", 0),
            ("stale", "stale", 1), ("promotions", "promo", 1), ("converge_s", "conv_s", 1),
            ("unavail_ms", "unav_ms", 0), ("violations", "viol", 0)]
    head = f"{'scenario':<29}{'target':<16}" + "".join(f"{h:>9}" for _, h, _ in cols)
    lines = [head, "-" * len(head)]
    for sc in summary:
        tg = summary[sc]
        for name in ("raft-sentinel", "redis-sentinel"):
            if name not in tg:
                continue
            a = tg[name]
            lines.append(f"{sc:<29}{name:<16}" + "".join(f"{_fmt(a[k], nd):>9}" for k, _, nd in cols))
        if "raft-sentinel" in tg and "redis-sentinel" in tg:
            a, b = tg["raft-sentinel"], tg["redis-sentinel"]
            lines.append(f"{'':<29}{'ratio raft/sen':<16}" + "".join(f"{_ratio(a[k], b[k]):>9}" for k, _, _ in cols))
    lines.append("")
    lines.append("means over the runs of each scenario (violations: total); lost = acknowledged writes missing "
                 "at the end, unexpl = lost beyond async replication, splitms = time with two writable masters, "
                 "stale = stale addresses after a committed switch, promo = promotions seen, conv_s = seconds "
                 "from heal to agreement, unav_ms = longest client outage total.")
    return "\n".join(lines)
