"""The checker must find each kind of violation in small hand-made histories, and must not
report one in a clean history."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import checker  # noqa: E402

A, B, C = "10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"
S1, S2, S3 = "10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"


def meta():
    return {"kind": "meta", "initial_master": A, "instances": [A, B, C], "sentinels": [S1, S2, S3]}


def role(t, node, r, master=None):
    return {"kind": "role", "t": t, "node": node, "role": r, "master": master, "link": "up"}


def addr(t, s, a, epoch=None):
    return {"kind": "addr", "t0": t, "t1": t + 0.001, "sentinel": s, "addr": a, "err": None, "epoch": epoch}


def write(t, key, node, ok=True, client="c1"):
    return {
        "kind": "write", "client": client, "key": key, "val": key, "t0": t, "t1": t + 0.002,
        "ok": ok, "node": node, "err": None if ok else "down", "indeterminate": False,
    }


def nem(t, op, phase):
    return {"kind": "nemesis", "t": t, "op": op, "phase": phase, "detail": None}


def clean_failover():
    """A kill of master A at 2.0, B promoted at 3.0 and served everywhere at once, healed at 5."""
    h = [meta()]
    for t in (0.0, 1.0, 1.9):
        h += [role(t, A, "master"), role(t, B, "slave", A), role(t, C, "slave", A)]
        h += [addr(t, s, A, 0) for s in (S1, S2, S3)]
    h.append(nem(2.0, "kill-master", "start"))
    h += [role(2.1, A, "down"), role(2.1, B, "slave", A), role(2.1, C, "slave", A)]
    h += [role(3.0, B, "master"), role(3.0, A, "down"), role(3.05, C, "slave", B)]
    h += [addr(3.01, s, B, 1) for s in (S1, S2, S3)]
    h.append(nem(5.0, "restart-master", "heal"))
    for t in (5.5, 6.0, 7.0):
        h += [role(t, A, "slave", B), role(t, B, "master"), role(t, C, "slave", B)]
        h += [addr(t, s, B, 1) for s in (S1, S2, S3)]
    keys = []
    for i, t in enumerate((0.5, 1.0, 1.5, 3.5, 4.0, 6.5)):
        node = A if t < 2 else B
        h.append(write(t, f"k{i}", node))
        keys.append(f"k{i}")
    h.append({"kind": "final", "t": 7.5, "master": B, "values": {k: k for k in keys}})
    return h


class CheckerTest(unittest.TestCase):
    def test_clean_failover_has_no_violation(self):
        r = checker.check(clean_failover())
        self.assertEqual(r["violations"], [])
        self.assertEqual(r["timeline"], [(0.0, A), (3.011, B)])
        self.assertEqual(r["promotions"]["promotions"], 1)
        self.assertEqual(r["split_brain"]["total_ms"], 0.0)
        self.assertEqual(r["writes"]["lost"], 0)
        self.assertIsNotNone(r["converged_after_s"])
        # Between the last write on A (1.5) and the first on B (3.5) the client was unavailable.
        self.assertGreaterEqual(r["unavailability"]["c1"]["unavailable_ms"], 1900)

    def test_split_brain_is_reported_with_its_duration(self):
        h = clean_failover()
        # A comes back at 5.2 still claiming to be master until 6.0: 0.8 s with B.
        h += [role(5.2, A, "master"), role(5.2, B, "master")]
        h = [e for e in h if not (e["kind"] == "role" and e["node"] == A and e["t"] == 5.5)]
        h.append(role(6.0, A, "slave", B))
        r = checker.check(h, fence_grace=0.5)
        sb = r["split_brain"]
        self.assertEqual(len(sb["spans"]), 1)
        self.assertEqual(sb["spans"][0]["nodes"], [A, B])
        self.assertAlmostEqual(sb["total_ms"], 800.0, delta=1)
        self.assertTrue(any("split brain" in v for v in r["violations"]))
        # Within the fencing grace it is measured but not a violation.
        r = checker.check(h, fence_grace=1.0)
        self.assertFalse(any("split brain" in v for v in r["violations"]))

    def test_lost_write_beyond_async_replication_is_reported(self):
        h = clean_failover()
        # k0 was acknowledged by A at 0.5, long before the fault: async replication cannot
        # explain losing it.
        final = [e for e in h if e["kind"] == "final"][0]
        del final["values"]["k0"]
        r = checker.check(h)
        w = r["writes"]
        self.assertEqual((w["lost"], w["lost_unexplained"], w["lost_async"]), (1, 1, 0))
        self.assertEqual(w["examples"][0]["key"], "k0")
        self.assertTrue(any("beyond async replication" in v for v in r["violations"]))

    def test_lost_write_just_before_the_fault_is_explained_by_async_replication(self):
        h = clean_failover()
        final = [e for e in h if e["kind"] == "final"][0]
        del final["values"]["k2"]  # acknowledged by A at 1.5, 0.5 s before the kill
        r = checker.check(h)
        self.assertEqual((r["writes"]["lost"], r["writes"]["lost_async"]), (1, 1))
        self.assertEqual(r["violations"], [])

    def test_write_acknowledged_by_a_deposed_master_is_a_split_brain_loss(self):
        h = clean_failover()
        h.append(write(4.5, "zombie", A))  # A was no longer the master of record at 4.5
        r = checker.check(h)
        self.assertEqual(r["writes"]["lost_split_brain"], 1)
        self.assertTrue(any("deposed master" in v for v in r["violations"]))

    def test_stale_address_after_a_committed_switch_is_reported(self):
        h = clean_failover()
        h.append(addr(4.0, S3, A, 0))  # S3 still serves A one second after the switch to B
        r = checker.check(h)
        st = r["stale"]
        self.assertEqual(st["stale"], 1)
        self.assertEqual(st["per_sentinel"], {S3: 1})
        self.assertTrue(any("stale" in v for v in r["violations"]))

    def test_old_address_inside_the_grace_window_is_not_stale(self):
        h = clean_failover()
        h.append(addr(3.2, S3, A, 0))
        r = checker.check(h, stale_grace=0.5)
        self.assertEqual(r["stale"]["stale"], 0)
        self.assertEqual(r["stale"]["propagation"][0]["addr"], B)

    def test_two_masters_in_one_epoch_and_orphan_promotion(self):
        h = clean_failover()
        h += [role(3.1, C, "master"), role(3.3, C, "slave", B)]  # C promoted too, never committed
        h.append(addr(3.2, S2, C, 1))
        r = checker.check(h)
        p = r["promotions"]
        self.assertEqual(p["epochs_with_several_masters"], {1: sorted([B, C])})
        self.assertEqual(len(p["orphan_promotions"]), 0)  # C was served, so it is on the timeline
        self.assertTrue(any("several masters" in v for v in r["violations"]))
        h2 = clean_failover() + [role(3.1, C, "master"), role(3.3, C, "slave", B)]
        p2 = checker.check(h2)["promotions"]
        self.assertEqual([o["node"] for o in p2["orphan_promotions"]], [C])

    def test_never_converging_is_reported(self):
        h = clean_failover()
        h.append(role(7.2, C, "slave", A))  # C follows the wrong master to the end
        r = checker.check(h)
        self.assertIsNone(r["converged_after_s"])
        self.assertTrue(any("converged" in v for v in r["violations"]))

    def test_missing_final_read_is_not_a_pass(self):
        h = [e for e in clean_failover() if e["kind"] != "final"]
        r = checker.check(h)
        self.assertFalse(r["writes"]["checked"])
        self.assertTrue(any("not checked" in v for v in r["violations"]))


if __name__ == "__main__":
    unittest.main()
