"""The faults. Each scenario runs against a deployment whose master starts on host 1 and ends
with ctx.heal(), after which the runner waits for convergence and checks the history.

Every scenario records what it did as nemesis events; "start" marks a fault beginning (the
checker uses it to decide which lost writes async replication explains).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import NamedTuple

import checker
from deploy import PEER_PORT, SENTINEL_PORT
from resp import Conn


class Ctx:
    def __init__(self, d, lab, hist, rng, timing):
        self.d = d
        self.lab = lab
        self.h = hist
        self.rng = rng
        self.t = timing
        self.down_after = timing.down_after_ms / 1000.0

    def nem(self, op, phase="start", detail=None):
        self.h.add({"kind": "nemesis", "t": self.h.now(), "op": op, "phase": phase, "detail": detail})

    def sleep(self, s):
        # Jitter within 10% keeps runs varied yet reproducible from the seed.
        time.sleep(s * (0.95 + 0.1 * self.rng.random()))

    def master_host(self):
        tl = checker.switch_timeline(self.h.snapshot())
        return self.d.host_of(tl[-1][1]) if tl else 1

    def others(self, host):
        return [i for i in (1, 2, 3) if i != host]

    def heal(self, op="heal"):
        self.lab.heal_all()
        for p in list(self.d.redis.values()) + list(self.d.coord.values()):
            p.signal(signal.SIGCONT)
        self.nem(op, "heal")

    def wait_event(self, channels, since, timeout, poll=0.005):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            e = self.h.find_event(channels, since)
            if e:
                return e
            time.sleep(poll)
        return None



def _restart_master_and_heal(ctx, m):
    """The end of most scenarios: the old master back with its data, then every fault healed."""
    ctx.d.start_redis(m, fresh=False)
    ctx.sleep(1)
    ctx.heal()

def kill_master(ctx):
    m = ctx.master_host()
    ctx.nem("kill -9 master", detail={"host": m})
    ctx.d.redis[m].kill9()
    ctx.sleep(4 * ctx.down_after + 1)
    ctx.nem("restart old master", "info", {"host": m})
    _restart_master_and_heal(ctx, m)


def _host_loss(ctx, leader_too):
    m = ctx.master_host()
    detail = {"host": m}
    if ctx.d.kind == "raft-sentinel":
        lead = ctx.d.leader()
        if leader_too and lead != m:
            ctx.d.transfer_leader(m)
            # Leadership placement may move it away again; kill at once and record who led.
            lead = ctx.d.leader()
        elif not leader_too and lead == m:
            ctx.d.transfer_leader(ctx.others(m)[0])
            time.sleep(0.3)
            lead = ctx.d.leader()
        detail["raft_leader_at_kill"] = lead
    ctx.nem("host lost (redis + coordinator)", detail=detail)
    ctx.d.redis[m].kill9()
    ctx.d.coord[m].kill9()
    ctx.sleep(4 * ctx.down_after + 2)
    ctx.nem("host back", "info", {"host": m})
    ctx.d.start_coord(m)
    _restart_master_and_heal(ctx, m)


def host_loss(ctx):
    _host_loss(ctx, leader_too=False)


def host_loss_leader(ctx):
    _host_loss(ctx, leader_too=True)


def sigstop_master(ctx):
    m = ctx.master_host()
    ctx.nem("SIGSTOP master", detail={"host": m})
    ctx.d.redis[m].signal(signal.SIGSTOP)
    ctx.sleep(4 * ctx.down_after + 1)
    ctx.d.redis[m].signal(signal.SIGCONT)
    ctx.heal("SIGCONT master")


def partition_master(ctx):
    m = ctx.master_host()
    ctx.nem("partition master host (both ways)", detail={"host": m})
    ctx.lab.partition(m, ctx.others(m), both=True)
    ctx.sleep(5 * ctx.down_after + 1)
    ctx.heal()


def partition_master_oneway(ctx):
    m = ctx.master_host()
    ctx.nem("partition master host (its packets to peers dropped)", detail={"host": m})
    ctx.lab.partition(m, ctx.others(m), both=False)
    ctx.sleep(5 * ctx.down_after + 1)
    ctx.heal()


def partition_leader(ctx):
    m = ctx.master_host()
    if ctx.d.kind == "raft-sentinel":
        lead = ctx.d.leader()
        if lead is None or lead == m:
            ctx.d.transfer_leader(ctx.others(m)[0])
            time.sleep(0.5)
            lead = ctx.d.leader()
        target = lead if lead and lead != m else ctx.others(m)[0]
    else:
        # Sentinel has no standing leader: cut a replica host with its sentinel.
        target = ctx.others(m)[0]
    ctx.nem("partition coordinator leader host", detail={"host": target})
    ctx.lab.partition(target, ctx.others(target), both=True)
    ctx.sleep(5 * ctx.down_after + 1)
    ctx.heal()


def leader_kill_mid_failover(ctx):
    m = ctx.master_host()
    since = ctx.h.now()
    lead = ctx.d.leader() if ctx.d.kind == "raft-sentinel" else None
    ctx.nem("kill -9 master", detail={"host": m})
    ctx.d.redis[m].kill9()
    # raft-sentinel publishes failover steps on every node once applied; Sentinel's leader
    # alone publishes +elected-leader.
    chans = {"+selected-slave", "+failover-state-send-slaveof-noone", "+elected-leader", "+try-failover"}
    if ctx.d.kind == "redis-sentinel":
        chans = {"+elected-leader"}
    ev = ctx.wait_event(chans, since, 10 * ctx.down_after)
    victim = None
    if ev:
        if ctx.d.kind == "raft-sentinel":
            victim = ctx.d.leader() or lead
        else:
            victim = ctx.d.host_of(ev["sentinel"])
    if victim:
        switched = ctx.h.find_event({"+switch-master"}, since) is not None
        ctx.nem("kill -9 coordinator leader mid-failover", "start",
                {"host": victim, "after_event": ev["channel"], "switch_already_published": switched})
        ctx.d.coord[victim].kill9()
    else:
        ctx.nem("no failover started in time", "info")
    ctx.sleep(3)
    if victim:
        ctx.d.start_coord(victim)
    ctx.sleep(3)
    _restart_master_and_heal(ctx, m)


def all_coordinators_restart(ctx):
    ctx.nem("kill -9 every coordinator")
    for i in (1, 2, 3):
        ctx.d.coord[i].kill9()
    ctx.sleep(3)
    for i in (1, 2, 3):
        ctx.d.start_coord(i)
    ctx.sleep(1)
    ctx.heal("coordinators restarted")


def flapping_master(ctx):
    for n in range(4):
        m = ctx.master_host()
        ctx.nem("SIGSTOP master (flap)", detail={"host": m, "n": n})
        ctx.d.redis[m].signal(signal.SIGSTOP)
        ctx.sleep(1.5 * ctx.down_after)
        ctx.d.redis[m].signal(signal.SIGCONT)
        ctx.nem("SIGCONT master (flap)", "info", {"host": m, "n": n})
        ctx.sleep(1.5 * ctx.down_after)
    ctx.heal()


def master_restart_empty(ctx):
    m = ctx.master_host()
    ctx.nem("kill -9 master, wipe its data, restart at once", detail={"host": m})
    ctx.d.redis[m].kill9()
    ctx.d.wipe_redis_data(m)
    ctx.d.start_redis(m, fresh=False)
    ctx.sleep(5 * ctx.down_after + 1)
    ctx.heal()


def lagging_replica(ctx):
    m = ctx.master_host()
    slow = ctx.others(m)[1]
    ctx.nem("replica link slowed to 64 kbit/s", "info", {"host": slow})
    ctx.lab.slow_in(slow)
    ctx.sleep(3)
    ctx.nem("kill -9 master while a replica lags", detail={"host": m, "lagging": slow})
    ctx.d.redis[m].kill9()
    ctx.sleep(4 * ctx.down_after + 1)
    ctx.lab.unslow(slow)
    _restart_master_and_heal(ctx, m)


def coordinator_churn(ctx):
    h = ctx.lab.add_host()
    i = h.idx
    ctx.d.start_coord(i, join=True)
    time.sleep(0.5)
    r, err = ctx.d.add_node(i)
    ctx.nem("coordinator 4 added", "info", {"ok": r is not None, "err": err})
    ctx.sleep(1.5)
    m = ctx.master_host()
    ctx.nem("kill -9 master during membership change", detail={"host": m})
    ctx.d.redis[m].kill9()
    ctx.sleep(1.5 * ctx.down_after)
    r, err = ctx.d.remove_node(i)
    ctx.nem("coordinator 4 removed", "info", {"ok": r is not None, "err": err})
    if ctx.d.kind == "raft-sentinel" and i in ctx.d.coord:
        ctx.d.coord[i].term()
    ctx.sleep(3 * ctx.down_after)
    _restart_master_and_heal(ctx, m)


def switchover(ctx):
    m = ctx.master_host()
    ctx.nem("planned switchover", detail={"host": m})
    r, err = ctx.d.switchover()
    ctx.nem("switchover answered", "info", {"ok": r is not None, "reply": r, "err": err})
    ctx.sleep(3)
    ctx.heal("switchover done")


def stale_vote(ctx):
    """A coordinator votes the master down, is stopped but stays a member, and much later
    another coordinator has a short blip toward the master: the old vote must not complete
    the quorum, so the healthy master is not failed over."""
    m = ctx.master_host()
    blip, gone = ctx.others(m)
    since = ctx.h.now()
    # Only the path to the master's Redis port is cut: the coordinators still reach each other.
    mip, mport = ctx.d.redis_addr(m).rsplit(":", 1)
    ctx.nem("coordinator host loses its path to the master", detail={"host": gone, "master": m})
    ctx.lab.drop_port(gone, mip, int(mport))
    # Its subjective down (and, for raft-sentinel, its committed vote) comes after down-after.
    if not ctx.wait_event({"+sdown"}, since, 5 * ctx.down_after + 2):
        ctx.nem("no +sdown seen from the cut-off coordinator", "info")
    time.sleep(0.5)
    ctx.nem("its coordinator stopped (still a member); path restored", "info", {"host": gone})
    ctx.d.coord[gone].kill9()
    ctx.lab.heal_all()
    # Well past raft-sentinel's vote lifetime, max(2 x down-after, 5 s), and Sentinel's reply
    # validity (about 5 s).
    ctx.sleep(max(2 * ctx.down_after, 5.0) + 3)
    blip_s = max(2.0, 2 * ctx.down_after)
    ctx.nem("another coordinator's path to the master blips", "info", {"host": blip, "seconds": blip_s})
    ctx.lab.drop_port(blip, mip, int(mport))
    time.sleep(blip_s)
    ctx.lab.heal_all()
    ctx.nem("blip over", "info", {"host": blip})
    # A failover on the stale vote would start and finish within this.
    ctx.sleep(4 * ctx.down_after + 2)
    ign = ctx.h.find_event({"+vote-ignored"}, since)
    ctx.nem("vote-ignored event", "info", {"seen": ign is not None, "data": ign["data"] if ign else None})
    ctx.nem("stopped coordinator back", "info", {"host": gone})
    ctx.d.start_coord(gone)
    ctx.sleep(1)
    ctx.heal()


def disk_replaced(ctx):
    """A failover commits on {A, C} while B's coordinator is down; C's disk is replaced and C
    restarts with its original configuration; A's coordinator dies and B returns. The two
    coordinators left must not answer the pre-failover master or fail over again with an
    epoch already used. A then returns and C is re-admitted (raft-sentinel: ctl replace-node)."""
    m = ctx.master_host()
    a = m  # the coordinator beside the master survives the failover, then dies
    b, c = ctx.others(m)
    ctx.nem("coordinator down", "info", {"host": b})
    ctx.d.coord[b].kill9()
    ctx.sleep(1)
    ctx.nem("kill -9 master while one coordinator is down", detail={"host": m, "coordinator_down": b})
    ctx.d.redis[m].kill9()
    ctx.sleep(4 * ctx.down_after + 2)
    ctx.nem("restart old master", "info", {"host": m})
    ctx.d.start_redis(m, fresh=False)
    ctx.sleep(2)
    ctx.nem("coordinator disk replaced: state wiped, restarted with its original config",
            detail={"host": c})
    ctx.d.coord[c].kill9()
    ctx.d.wipe_coord(c)
    ctx.nem("coordinator dies; the down one returns", "info", {"dead": a, "back": b})
    ctx.d.coord[a].kill9()
    ctx.d.start_coord(c)
    ctx.d.start_coord(b)
    # Long enough for B and C to elect, answer clients and detect anything they would act on.
    ctx.sleep(6 * ctx.down_after + 4)
    ctx.nem("dead coordinator back", "info", {"host": a})
    ctx.d.start_coord(a)
    ctx.sleep(3)
    r, err = ctx.d.replace_node(c)
    ctx.nem("wiped coordinator re-admitted", "info", {"host": c, "ok": r is not None, "err": err})
    ctx.sleep(1)
    ctx.heal()


def _reconf_calls(addr):
    """How many REPLICAOF/SLAVEOF an instance has run (INFO commandstats; None if down).
    Not MONITOR: it hides administrative commands, and the CLIENT KILL TYPE normal of a
    reconfiguration closes MONITOR connections too."""
    host, port = addr.rsplit(":", 1)
    try:
        c = Conn(host, int(port), 0.5)
        r = c.call("INFO", "commandstats")
        c.close()
    except OSError:
        return None
    if not isinstance(r, str):
        return None
    n = 0
    for line in r.splitlines():
        name, _, rest = line.partition(":")
        if name in ("cmdstat_replicaof", "cmdstat_slaveof"):
            n += int(rest.split("calls=")[1].split(",")[0])
    return n


def _role(addr):
    host, port = addr.rsplit(":", 1)
    try:
        c = Conn(host, int(port), 0.2)
        r = c.call("ROLE")
        c.close()
    except OSError:
        return None
    return r[0] if isinstance(r, list) and r else None


def _info_field(addr, section, field):
    host, port = addr.rsplit(":", 1)
    try:
        c = Conn(host, int(port), 0.5)
        r = c.call("INFO", section)
        c.close()
    except OSError:
        return None
    if not isinstance(r, str):
        return None
    for line in r.splitlines():
        k, _, v = line.partition(":")
        if k == field:
            return v.strip()
    return None


def _leader_of_failover(ctx, since):
    """The coordinator leading the failover: raft-sentinel's Raft leader; for Sentinel, the
    one that published +elected-leader."""
    if ctx.d.kind == "raft-sentinel":
        return ctx.d.leader()
    ev = ctx.h.find_event({"+elected-leader"}, since)
    return ctx.d.host_of(ev["sentinel"]) if ev else None


def coordinator_stall(ctx):
    """Every coordinator stalls (SIGSTOP) for 3 x down-after while Redis stays healthy, then
    continues. A coordinator must not take its own stall for the master's failure: nothing
    may be failed over (Sentinel calls this TILT)."""
    since = ctx.h.now()
    stall = 3 * ctx.down_after
    ctx.nem("SIGSTOP every coordinator, Redis healthy", detail={"seconds": stall})
    for i in (1, 2, 3):
        ctx.d.coord[i].signal(signal.SIGSTOP)
    time.sleep(stall)
    for i in (1, 2, 3):
        ctx.d.coord[i].signal(signal.SIGCONT)
    ctx.nem("SIGCONT every coordinator", "info")
    time.sleep(0.5)
    ctx.nem("sentinel_tilt in INFO sentinel, 0.5 s after", "info",
            {i: _info_field(ctx.d.sentinel_addr(i), "sentinel", "sentinel_tilt") for i in (1, 2, 3)})
    # A failover on the stale results would start and finish within this.
    ctx.sleep(4 * ctx.down_after + 2)
    counts = {}
    for e in ctx.h.snapshot():
        if e["kind"] == "event" and e["t"] >= since and e["channel"] in (
                "+tilt", "-tilt", "+sdown", "+odown", "+try-failover", "+new-epoch", "+switch-master"):
            counts[e["channel"]] = counts.get(e["channel"], 0) + 1
    # Events are counted once per coordinator that published them.
    ctx.nem("events after the stall", "info", counts)
    ctx.heal()


def _master_link(addr):
    """Where a replica points (master_host:master_port), or None if it does not answer."""
    h = _info_field(addr, "replication", "master_host")
    p = _info_field(addr, "replication", "master_port")
    return f"{h}:{p}" if h and p else None


def leader_partition_mid_reconf(ctx):
    """The master dies; the coordinator leading the failover is cut off from the other
    coordinators (only the coordinator ports: it still reaches every Redis) while the
    reconfiguration of the other replica is pending. To make that deterministic, the replica
    that is not promoted is stopped (SIGSTOP) as soon as the selection is published, so the
    leader's REPLICAOF to it cannot complete; the cut lands once the promotion is done
    (+failover-state-reconf-slaves), and the replica continues 2 x down-after after the cut.
    Redis's REPLICAOF counts over the cut are recorded (they cannot say who sent them: a
    command the leader wrote before the cut runs when the replica continues, and the new
    leader may legitimately resend; tests/failover_partition.rs tells senders apart)."""
    m = ctx.master_host()
    since = ctx.h.now()
    pre = ctx.d.leader() if ctx.d.kind == "raft-sentinel" else None
    replicas = ctx.others(m)
    old = ctx.d.redis_addr(m)
    base = {i: _reconf_calls(ctx.d.redis_addr(i)) for i in replicas}
    ctx.nem("kill -9 master", detail={"host": m, "raft_leader_before": pre})
    ctx.d.redis[m].kill9()
    wait = 10 * ctx.down_after + ctx.t.failover_timeout_ms / 1000
    # Both targets publish +selected-slave with the chosen replica first ("slave ip:port ...");
    # raft-sentinel publishes it with the whole failover start, on every node.
    # raft-sentinel promotes within tens of ms of the selection: poll tightly.
    sel = ctx.wait_event({"+selected-slave"}, since, wait, poll=0.001)
    chosen = ctx.d.host_of(sel["data"].split()[1]) if sel and len(sel["data"].split()) > 1 else None
    if chosen not in replicas:
        ctx.nem("no selection seen in time", "info", {"event": sel})
        ctx.sleep(4 * ctx.down_after)
        _restart_master_and_heal(ctx, m)
        return
    other = next(i for i in replicas if i != chosen)
    oaddr = ctx.d.redis_addr(other)
    # Read just before the stop: still following the old master and no REPLICAOF since the
    # kill means its reconfiguration has not run, and cannot while it is stopped.
    before_stop = {"points_at": _master_link(oaddr), "replicaof_calls": _reconf_calls(oaddr)}
    ctx.d.redis[other].signal(signal.SIGSTOP)
    pending = before_stop["points_at"] == old and before_stop["replicaof_calls"] == base[other]
    ctx.nem("replica to be reconfigured stopped (SIGSTOP)", "info",
            {"host": other, "selected": chosen, "old_master": old, **before_stop,
             "reconfiguration_pending": pending})
    ev = ctx.wait_event({"+failover-state-reconf-slaves"}, since, wait)
    lead = None
    if ev:
        lead = pre if ctx.d.kind == "raft-sentinel" else _leader_of_failover(ctx, since)
    if not lead:
        ctx.d.redis[other].signal(signal.SIGCONT)
        ctx.nem("no reconfiguration seen in time", "info", {"replica_continued": other})
        ctx.sleep(4 * ctx.down_after)
        _restart_master_and_heal(ctx, m)
        return
    switched = ctx.h.find_event({"+switch-master"}, since) is not None
    done = [e["data"] for e in ctx.h.snapshot() if e["kind"] == "event" and e["t"] >= since
            and e["channel"] == "+slave-reconf-done" and oaddr in e["data"]]
    port = PEER_PORT if ctx.d.kind == "raft-sentinel" else SENTINEL_PORT
    lip = ctx.d.ip(lead)
    for o in ctx.others(lead):
        ctx.lab.drop_port(lead, ctx.d.ip(o), port)
        ctx.lab.drop_port(o, lip, port)
    at_cut = _reconf_calls(ctx.d.redis_addr(chosen))
    ctx.nem("leader's coordinator cut off from its peers mid-reconfiguration",
            detail={"host": lead, "after_event": ev["channel"], "port": port,
                    "switch_already_published": switched, "stopped_replica": other,
                    "reconfiguration_pending_at_cut": pending and not done,
                    "reconf_done_published_before_cut": bool(done)})
    cut_s = 5 * ctx.down_after + 1
    t0 = time.monotonic()
    # Past the deposed leader's election timeout, so it no longer leads when the replica runs.
    time.sleep(2 * ctx.down_after)
    ctx.d.redis[other].signal(signal.SIGCONT)
    time.sleep(0.2)
    ctx.nem("stopped replica continued (SIGCONT) during the cut", "info",
            {"host": other, "points_at_0.2s": _master_link(oaddr),
             "new_master": ctx.d.redis_addr(chosen)})
    time.sleep(max(0.0, cut_s - (time.monotonic() - t0)))
    after = {i: _reconf_calls(ctx.d.redis_addr(i)) for i in replicas}
    ran = {chosen: (after[chosen] - at_cut) if None not in (after[chosen], at_cut) else None,
           other: (after[other] - base[other]) if None not in (after[other], base[other]) else None}
    ctx.nem("REPLICAOF calls Redis ran during the cut (any sender)", "info",
            {**ran, "stopped_replica_points_at": _master_link(oaddr),
             "new_master": ctx.d.redis_addr(chosen)})
    ctx.lab.heal_all()
    ctx.nem("coordinator ports healed", "info", {"host": lead})
    ctx.sleep(2)
    _restart_master_and_heal(ctx, m)


def timeout_after_promotion(ctx):
    """The master dies; right after the coordinator leading the failover promoted a replica
    (REPLICAOF NO ONE), it dies and a second coordinator stalls, so no leader exists for
    longer than failover-timeout. The next leader must finish that failover with the
    promoted replica, not abort it and promote another one."""
    m = ctx.master_host()
    since = ctx.h.now()
    pre = ctx.d.leader() if ctx.d.kind == "raft-sentinel" else None
    ctx.nem("kill -9 master", detail={"host": m, "raft_leader_before": pre})
    ctx.d.redis[m].kill9()
    promoted = None
    end = time.monotonic() + 10 * ctx.down_after + ctx.t.failover_timeout_ms / 1000
    while promoted is None and time.monotonic() < end:
        for i in ctx.others(m):
            if _role(ctx.d.redis_addr(i)) == "master":
                promoted = i
                break
        time.sleep(0.002)
    if promoted is None:
        ctx.nem("no promotion seen in time", "info")
        ctx.sleep(1)
        _restart_master_and_heal(ctx, m)
        return
    victim = pre if ctx.d.kind == "raft-sentinel" else _leader_of_failover(ctx, since)
    switched = ctx.h.find_event({"+switch-master"}, since) is not None
    if victim:
        ctx.d.coord[victim].kill9()
    stalled = next(i for i in (1, 2, 3) if i != victim)
    ctx.d.coord[stalled].signal(signal.SIGSTOP)
    away = ctx.t.failover_timeout_ms / 1000 + 2
    ctx.nem("failover leader killed right after the promotion; a second coordinator stalled",
            detail={"promoted": promoted, "killed": victim, "stalled": stalled, "seconds": away,
                    "switch_already_published": switched})
    time.sleep(away)
    ctx.d.coord[stalled].signal(signal.SIGCONT)
    if victim:
        ctx.d.start_coord(victim)
    ctx.nem("coordinators back", "info", {"killed": victim, "stalled": stalled})
    ctx.sleep(4 * ctx.down_after + 2)
    roles = {i: _role(ctx.d.redis_addr(i)) for i in ctx.others(m)}
    ctx.nem("roles before the old master returns", "info",
            {"promoted": promoted, "promoted_role": roles.get(promoted), "roles": roles})
    _restart_master_and_heal(ctx, m)


class Scenario(NamedTuple):
    """A fault, and what the checker may expect of the run."""
    run: Callable[[Ctx], None]
    # Skipped without network namespaces.
    needs_partitions: bool = False
    # A coordinator majority survives: every invariant is checked (else only convergence).
    majority_survives: bool = True
    # No acknowledged write may be lost.
    zero_loss: bool = False
    # The master stays healthy: a promotion is a violation.
    no_promotion: bool = False


SCENARIOS = {
    "kill-master": Scenario(kill_master),
    "host-loss": Scenario(host_loss),
    "host-loss-leader": Scenario(host_loss_leader),
    "sigstop-master": Scenario(sigstop_master),
    "partition-master": Scenario(partition_master, needs_partitions=True),
    "partition-master-oneway": Scenario(partition_master_oneway, needs_partitions=True),
    "partition-leader": Scenario(partition_leader, needs_partitions=True),
    "leader-kill-mid-failover": Scenario(leader_kill_mid_failover),
    "all-coordinators-restart": Scenario(all_coordinators_restart, majority_survives=False),
    "flapping-master": Scenario(flapping_master),
    "master-restart-empty": Scenario(master_restart_empty, zero_loss=True),
    "lagging-replica": Scenario(lagging_replica, needs_partitions=True),
    "coordinator-churn": Scenario(coordinator_churn),
    "switchover": Scenario(switchover, zero_loss=True),
    "stale-vote": Scenario(stale_vote, needs_partitions=True, zero_loss=True, no_promotion=True),
    "disk-replaced": Scenario(disk_replaced),
    "coordinator-stall": Scenario(coordinator_stall, zero_loss=True, no_promotion=True),
    "leader-partition-mid-reconf": Scenario(leader_partition_mid_reconf, needs_partitions=True),
    "timeout-after-promotion": Scenario(timeout_after_promotion),
}

SMOKE = ["kill-master", "partition-master", "master-restart-empty"]
