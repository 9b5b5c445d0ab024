"""The workload and the observers. Every thread appends to one History.

- PyWriter: redis-py's Sentinel client (master_for) writing SET c<id>:<seq> <seq> as fast as the
  master answers; each attempt is recorded with the address of the connection that carried it.
- RawWriter: asks the Sentinel port with SENTINEL get-master-addr-by-name (round robin over the
  coordinators, next one on error), keeps one connection to that address, and asks again only
  after an error or a -READONLY (what Jedis-style clients do).
- AddrPoller: per coordinator, get-master-addr-by-name every 50 ms, and SENTINEL MASTER every
  fifth round for the config epoch.
- RoleSampler: per Redis instance, ROLE every 50 ms (down when it does not answer in time).
- EventListener: per coordinator, PSUBSCRIBE * and every event.
"""

from __future__ import annotations

import threading
import time

from resp import Conn, RespError

NAME = "mymaster"


class History:
    def __init__(self):
        self.t0 = time.monotonic()
        self.events = []
        self.lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.t0

    def add(self, e):
        with self.lock:
            self.events.append(e)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def find_event(self, channels, since):
        with self.lock:
            for e in self.events:
                if e["kind"] == "event" and e["channel"] in channels and e["t"] >= since:
                    return e
        return None


class Worker(threading.Thread):
    def __init__(self, hist, stop):
        super().__init__(daemon=True)
        self.h = hist
        self.stop_ev = stop


class PyWriter(Worker):
    def __init__(self, hist, stop, sentinels, client_id):
        super().__init__(hist, stop)
        self.sentinels = sentinels
        self.cid = client_id
        self.keys = []

    def run(self):
        from redis.exceptions import ResponseError
        from redis.sentinel import Sentinel

        s = Sentinel(
            [(a.split(":")[0], int(a.split(":")[1])) for a in self.sentinels],
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
        m = s.master_for(NAME, socket_timeout=0.5, socket_connect_timeout=0.5)
        pool = m.connection_pool
        seq = 0
        while not self.stop_ev.is_set():
            seq += 1
            key, val = f"{self.cid}:{seq}", str(seq)
            self.keys.append(key)
            t0 = self.h.now()
            node = None
            conn = None
            try:
                conn = pool.get_connection()
                node = f"{conn.host}:{conn.port}"
                conn.send_command("SET", key, val)
                r = conn.read_response()
                if isinstance(r, ResponseError):
                    raise r
                self.h.add(_write(self.cid, key, val, t0, self.h.now(), True, node, None, False))
                pool.release(conn)
                # About 500 writes a second per client: enough to see every gap, light on 2 cores.
                time.sleep(0.002)
            except Exception as e:  # every failure is part of the record
                timeout = "Timeout" in type(e).__name__
                self.h.add(_write(self.cid, key, val, t0, self.h.now(), False, node,
                                  f"{type(e).__name__}: {e}"[:120], timeout))
                if conn is not None:
                    conn.disconnect()
                    pool.release(conn)
                time.sleep(0.05)


class RawWriter(Worker):
    def __init__(self, hist, stop, sentinels, client_id):
        super().__init__(hist, stop)
        self.sentinels = sentinels
        self.cid = client_id
        self.keys = []
        self.rr = 0

    def discover(self):
        for _ in range(len(self.sentinels)):
            s = self.sentinels[self.rr % len(self.sentinels)]
            self.rr += 1
            try:
                c = Conn(s.split(":")[0], int(s.split(":")[1]), 0.5)
                r = c.call("SENTINEL", "get-master-addr-by-name", NAME)
                c.close()
            except OSError:
                continue
            if isinstance(r, list) and len(r) == 2:
                return f"{r[0]}:{r[1]}"
        return None

    def run(self):
        seq = 0
        conn, node = None, None
        while not self.stop_ev.is_set():
            seq += 1
            key, val = f"{self.cid}:{seq}", str(seq)
            self.keys.append(key)
            t0 = self.h.now()
            try:
                if conn is None:
                    node = self.discover()
                    if node is None:
                        raise ConnectionError("no master address from any coordinator")
                    conn = Conn(node.split(":")[0], int(node.split(":")[1]), 0.5)
                r = conn.call("SET", key, val)
                if isinstance(r, RespError):
                    raise r
                self.h.add(_write(self.cid, key, val, t0, self.h.now(), True, node, None, False))
                time.sleep(0.002)
            except (OSError, RespError) as e:
                timeout = "timed out" in str(e)
                self.h.add(_write(self.cid, key, val, t0, self.h.now(), False, node,
                                  f"{type(e).__name__}: {e}"[:120], timeout))
                if conn is not None:
                    conn.close()
                conn, node = None, None
                time.sleep(0.05)
        if conn is not None:
            conn.close()


def _write(client, key, val, t0, t1, ok, node, err, indeterminate):
    return {"kind": "write", "client": client, "key": key, "val": val, "t0": t0, "t1": t1, "ok": ok,
            "node": node, "err": err, "indeterminate": indeterminate}


class AddrPoller(Worker):
    def __init__(self, hist, stop, sentinel, period=0.05):
        super().__init__(hist, stop)
        self.s = sentinel
        self.period = period

    def run(self):
        host, port = self.s.split(":")[0], int(self.s.split(":")[1])
        conn = None
        n = 0
        while not self.stop_ev.is_set():
            n += 1
            t0 = self.h.now()
            rec = {"kind": "addr", "t0": t0, "sentinel": self.s, "addr": None, "err": None, "epoch": None}
            try:
                if conn is None:
                    conn = Conn(host, port, 0.3)
                if n % 5 == 0:
                    r = conn.call("SENTINEL", "MASTER", NAME)
                    if isinstance(r, list):
                        f = dict(zip(r[::2], r[1::2]))
                        rec["addr"] = f"{f['ip']}:{f['port']}"
                        rec["epoch"] = int(f.get("config-epoch", 0))
                        rec["via"] = "master"
                    else:
                        rec["err"] = str(r)
                else:
                    r = conn.call("SENTINEL", "get-master-addr-by-name", NAME)
                    if isinstance(r, list) and len(r) == 2:
                        rec["addr"] = f"{r[0]}:{r[1]}"
                    else:
                        rec["err"] = str(r)
            except (OSError, ValueError, KeyError) as e:
                rec["err"] = f"{type(e).__name__}: {e}"[:100]
                if conn is not None:
                    conn.close()
                conn = None
            rec["t1"] = self.h.now()
            self.h.add(rec)
            time.sleep(self.period)
        if conn is not None:
            conn.close()


class RoleSampler(Worker):
    def __init__(self, hist, stop, node, period=0.05):
        super().__init__(hist, stop)
        self.node = node
        self.period = period

    def run(self):
        host, port = self.node.split(":")[0], int(self.node.split(":")[1])
        conn = None
        while not self.stop_ev.is_set():
            t = self.h.now()
            rec = {"kind": "role", "t": t, "node": self.node, "role": "down", "master": None, "link": None}
            try:
                if conn is None:
                    conn = Conn(host, port, 0.3)
                r = conn.call("ROLE")
                if isinstance(r, list):
                    if r[0] == "master":
                        rec["role"] = "master"
                        rec["offset"] = r[1]
                    elif r[0] == "slave":
                        rec["role"] = "slave"
                        rec["master"] = f"{r[1]}:{r[2]}"
                        rec["link"] = "up" if r[3] == "connected" else r[3]
                        rec["offset"] = r[4]
                else:
                    rec["err"] = str(r)
            except (OSError, ValueError) as e:
                rec["err"] = f"{type(e).__name__}"
                if conn is not None:
                    conn.close()
                conn = None
            self.h.add(rec)
            time.sleep(self.period)
        if conn is not None:
            conn.close()


class EventListener(Worker):
    def __init__(self, hist, stop, sentinel):
        super().__init__(hist, stop)
        self.s = sentinel

    def run(self):
        host, port = self.s.split(":")[0], int(self.s.split(":")[1])
        while not self.stop_ev.is_set():
            try:
                c = Conn(host, port, 0.5)
                c.call("PSUBSCRIBE", "*")
                while not self.stop_ev.is_set():
                    try:
                        m = c.read()
                    except TimeoutError:
                        continue
                    if isinstance(m, list) and m and m[0] == "pmessage":
                        self.h.add({"kind": "event", "t": self.h.now(), "sentinel": self.s,
                                    "channel": m[2], "data": m[3]})
            except (OSError, ValueError):
                time.sleep(0.2)
