"""The deployment under test: three Redis servers and three coordinators, one of each per host.

Two kinds of coordinator, configured the same way (quorum 2, down-after, failover timeout):
raft-sentinel nodes, or real redis-sentinel processes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time

from procs import wait_port
from resp import Conn, RespError

REDIS_PORT = 6379
SENTINEL_PORT = 26379
GRPC_PORT = 7700
PEER_PORT = 7701
METRICS_PORT = 9700
NAME = "mymaster"


class Timing:
    def __init__(self, down_after_ms=1000, failover_timeout_ms=5000, tick_ms=50, election_ticks=10):
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.tick_ms = tick_ms
        self.election_ticks = election_ticks


class Deployment:
    """Common part: Redis servers. Subclasses add the coordinators."""

    kind = "?"

    def __init__(self, lab, workdir, timing, binary=None):
        self.lab = lab
        self.dir = workdir
        self.timing = timing
        self.binary = binary
        self.redis = {}
        self.coord = {}
        self.n = 3
        os.makedirs(workdir, exist_ok=True)

    def ip(self, i):
        return self.lab.hosts[i - 1].ip

    def redis_addr(self, i):
        return f"{self.ip(i)}:{REDIS_PORT}"

    def sentinel_addr(self, i):
        return f"{self.ip(i)}:{SENTINEL_PORT}"

    def host_of(self, addr):
        for h in self.lab.hosts:
            if addr and addr.split(":")[0] == h.ip:
                return h.idx
        return None

    # -- Redis --------------------------------------------------------------------------------

    def _redis_conf(self, i, replicaof):
        d = os.path.join(self.dir, f"redis{i}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "redis.conf")
        ip = self.ip(i)
        lines = [
            f"port {REDIS_PORT}",
            f"bind {ip}",
            "protected-mode no",
            f"dir {d}",
            f"logfile {os.path.join(d, 'redis.log')}",
            # Persistence as a production master has it: a restart after kill -9 keeps its data
            # up to the last second (the empty-restart scenario deletes it on purpose).
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
            # Redis's own advice for Sentinel deployments, for both targets alike: a master
            # without a replica that acknowledged within 2 s refuses writes (bounds what an
            # isolated master takes, and an empty restarted master takes nothing).
            "min-replicas-to-write 1",
            "min-replicas-max-lag 2",
            f"replica-announce-ip {ip}",
            f"bind-source-addr {ip}",
        ]
        if replicaof:
            lines.append(f"replicaof {self.ip(replicaof)} {REDIS_PORT}")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def start_redis(self, i, replicaof=None, fresh=True):
        d = os.path.join(self.dir, f"redis{i}")
        conf = os.path.join(d, "redis.conf")
        if fresh or not os.path.exists(conf):
            conf = self._redis_conf(i, replicaof)
        p = self.lab.spawn(i, ["redis-server", conf], f"redis{i}", os.path.join(d, "stdout.log"))
        self.redis[i] = p
        if not wait_port(self.ip(i), REDIS_PORT, 10):
            raise RuntimeError(f"redis on host {i} did not start")
        return p

    def wipe_redis_data(self, i):
        d = os.path.join(self.dir, f"redis{i}")
        for name in ("appendonlydir", "dump.rdb"):
            path = os.path.join(d, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def wait_replication(self, master, replicas, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ok = True
            for r in replicas:
                try:
                    c = Conn(self.ip(r), REDIS_PORT, 0.5)
                    role = c.call("ROLE")
                    c.close()
                except OSError:
                    ok = False
                    break
                if not (isinstance(role, list) and role[0] == "slave" and role[3] == "connected"):
                    ok = False
            if ok:
                return True
            time.sleep(0.1)
        return False

    def start(self):
        self.start_redis(1)
        self.start_redis(2, replicaof=1)
        self.start_redis(3, replicaof=1)
        if not self.wait_replication(1, [2, 3]):
            raise RuntimeError("replicas did not sync")
        for i in (1, 2, 3):
            self.start_coord(i, bootstrap=True)
        self.wait_ready()

    def stop(self):
        self.lab.stop_all()

    # -- coordinator helpers the scenarios use ------------------------------------------------

    def leader(self):
        return None

    def transfer_leader(self, to):
        return False


class RaftSentinel(Deployment):
    kind = "raft-sentinel"

    def _secret_file(self, name):
        """A generated secret shared by every node (nodes on 10.x addresses without TLS refuse
        to start without a cluster secret and an API password)."""
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        return path

    def _conf(self, i, peers):
        d = os.path.join(self.dir, f"node{i}")
        os.makedirs(d, exist_ok=True)
        ip = self.ip(i)
        t = self.timing
        s = [
            f"node_id = {i}",
            f'data_dir = "{os.path.join(d, "data")}"',
            "",
            "[listen]",
            f'sentinel = "{ip}:{SENTINEL_PORT}"',
            f'grpc = "{ip}:{GRPC_PORT}"',
            f'peer = "{ip}:{PEER_PORT}"',
            f'metrics = "{ip}:{METRICS_PORT}"',
            f'announce_ip = "{ip}"',
            "",
        ]
        for p in peers:
            s += ["[[peers]]", f"id = {p}", f'addr = "{self.ip(p)}:{PEER_PORT}"', ""]
        s += [
            "[raft]",
            'initial_cluster_state = "new"',
            f"tick_ms = {t.tick_ms}",
            f"election_ticks = {t.election_ticks}",
            "heartbeat_ticks = 2",
            "",
            "[security]",
            f'cluster_secret_file = "{self._secret_file("cluster.secret")}"',
            f'api_password_file = "{self._secret_file("api.secret")}"',
            "",
            "[[masters]]",
            f'name = "{NAME}"',
            f'addr = "{self.redis_addr(1)}"',
            "quorum = 2",
            f"down_after_ms = {t.down_after_ms}",
            f"failover_timeout_ms = {t.failover_timeout_ms}",
            "parallel_syncs = 1",
        ]
        path = os.path.join(d, "node.toml")
        with open(path, "w") as f:
            f.write("\n".join(s) + "\n")
        return path

    def start_coord(self, i, bootstrap=True, join=False):
        d = os.path.join(self.dir, f"node{i}")
        conf = os.path.join(d, "node.toml")
        if not os.path.exists(conf):
            peers = [1, 2, 3] if not join else [i]
            conf = self._conf(i, peers)
        argv = [self.binary, "run", "--config", conf]
        if join:
            argv.append("--join")
        env_log = os.path.join(d, "node.log")
        p = self.lab.spawn(i, ["env", "RAFT_SENTINEL_LOG=info,raft_rs=warn", *argv], f"node{i}", env_log)
        self.coord[i] = p
        return p

    def ctl(self, *args, timeout=10):
        eps = ",".join(f"{self.ip(i)}:{GRPC_PORT}" for i in sorted(self.coord) if self.coord[i].alive())
        argv = [self.binary, "ctl", "--endpoint", eps or f"{self.ip(1)}:{GRPC_PORT}", "--timeout-ms", "2000",
                "--password-file", self._secret_file("api.secret"), "--json", *args]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "timeout"
        if r.returncode != 0:
            return None, (r.stderr or r.stdout).strip()
        try:
            return json.loads(r.stdout), None
        except ValueError:
            return None, r.stdout.strip()

    def leader(self):
        st, _ = self.ctl("status")
        if not st:
            return None
        lid = st.get("leader_id") or st.get("leader")
        return int(lid) if lid else None

    def transfer_leader(self, to):
        r, err = self.ctl("transfer-leader", "--to", str(to))
        return r is not None

    def wait_ready(self, timeout=30):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            ok = self.leader() is not None
            if ok:
                d, err = self.ctl("master", NAME)
                last = d or err
                if d and len(d.get("replicas", [])) >= 2:
                    addrs = [_gmabn(self.ip(i)) for i in (1, 2, 3)]
                    if all(a == self.redis_addr(1) for a in addrs):
                        return
            time.sleep(0.2)
        raise RuntimeError(f"raft-sentinel not ready: {last}")

    def add_node(self, i):
        r, err = self.ctl("add-node", "--id", str(i), "--addr", f"{self.ip(i)}:{PEER_PORT}", timeout=20)
        return r, err

    def wipe_coord(self, i):
        # A replaced disk: the Raft data dir is gone, the configuration file is as shipped.
        shutil.rmtree(os.path.join(self.dir, f"node{i}", "data"), ignore_errors=True)

    def replace_node(self, i):
        # The leader may still be settling after the restarts: retry for a while.
        end = time.monotonic() + 20
        while True:
            r, err = self.ctl("replace-node", "--id", str(i), timeout=20)
            if r is not None or time.monotonic() > end:
                return r, err
            time.sleep(1)

    def remove_node(self, i):
        r, err = self.ctl("remove-node", "--id", str(i), timeout=20)
        return r, err

    def switchover(self):
        return self.ctl("switchover", NAME, timeout=20)


class RedisSentinel(Deployment):
    kind = "redis-sentinel"

    def _conf(self, i):
        d = os.path.join(self.dir, f"sentinel{i}")
        os.makedirs(d, exist_ok=True)
        ip = self.ip(i)
        t = self.timing
        lines = [
            f"port {SENTINEL_PORT}",
            f"bind {ip}",
            "protected-mode no",
            f"dir {d}",
            f"logfile {os.path.join(d, 'sentinel.log')}",
            f"sentinel announce-ip {ip}",
            f"sentinel monitor {NAME} {self.ip(1)} {REDIS_PORT} 2",
            f"sentinel down-after-milliseconds {NAME} {t.down_after_ms}",
            f"sentinel failover-timeout {NAME} {t.failover_timeout_ms}",
            f"sentinel parallel-syncs {NAME} 1",
        ]
        path = os.path.join(d, "sentinel.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start_coord(self, i, bootstrap=True, join=False):
        d = os.path.join(self.dir, f"sentinel{i}")
        conf = os.path.join(d, "sentinel.conf")
        if not os.path.exists(conf):
            conf = self._conf(i)
        p = self.lab.spawn(i, ["redis-sentinel", conf], f"sentinel{i}", os.path.join(d, "stdout.log"))
        self.coord[i] = p
        return p

    def wait_ready(self, timeout=30):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            ok = True
            for i in (1, 2, 3):
                try:
                    c = Conn(self.ip(i), SENTINEL_PORT, 0.5)
                    m = c.call("SENTINEL", "MASTER", NAME)
                    c.close()
                except OSError as e:
                    ok, last = False, str(e)
                    break
                if isinstance(m, RespError) or not m:
                    ok, last = False, str(m)
                    break
                f = dict(zip(m[::2], m[1::2]))
                last = f
                if int(f.get("num-other-sentinels", 0)) < 2 or int(f.get("num-slaves", 0)) < 2:
                    ok = False
            if ok:
                return
            time.sleep(0.2)
        raise RuntimeError(f"redis-sentinel not ready: {last}")

    def sentinel_cmd(self, i, *args):
        try:
            c = Conn(self.ip(i), SENTINEL_PORT, 2.0)
            r = c.call(*args)
            c.close()
            return r
        except OSError as e:
            return RespError(str(e))

    def add_node(self, i):
        self.start_coord(i)
        return True, None

    def wipe_coord(self, i):
        # A replaced disk: the rewritten sentinel.conf (epochs, known master) is gone and the
        # configuration is back to what was deployed.
        os.remove(os.path.join(self.dir, f"sentinel{i}", "sentinel.conf"))

    def replace_node(self, i):
        # Sentinel has no such step: a restarted Sentinel learns from its peers' hellos.
        return {"ok": True}, None

    def remove_node(self, i):
        # Sentinel's documented procedure: stop it, then SENTINEL RESET on every other one.
        if i in self.coord:
            self.coord[i].kill9()
        for j in sorted(self.coord):
            if j != i and self.coord[j].alive():
                self.sentinel_cmd(j, "SENTINEL", "RESET", NAME)
                time.sleep(0.2)
        return True, None

    def switchover(self):
        r = self.sentinel_cmd(1, "SENTINEL", "FAILOVER", NAME)
        return (None, str(r)) if isinstance(r, RespError) else ({"ok": r}, None)


def _gmabn(ip):
    try:
        c = Conn(ip, SENTINEL_PORT, 0.5)
        r = c.call("SENTINEL", "get-master-addr-by-name", NAME)
        c.close()
    except OSError:
        return None
    if isinstance(r, list) and len(r) == 2:
        return f"{r[0]}:{r[1]}"
    return None
