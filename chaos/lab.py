"""Hosts for a chaos run: network namespaces on a private bridge, or loopback addresses.

Namespace mode (root with iproute2): one namespace per host with address 10.78.0.<n>, one for
the clients (10.78.0.100), and one holding the bridge, so nothing is routed to or from the
root namespace. Partitions are cut between hosts only, with tc filters on each host's interface
that send the other hosts' traffic to a queue of length 0 (this kernel may lack netem and tc
actions, so the suite uses only htb, pfifo and u32); clients keep reaching every host, like
Jepsen's clients on the minority side. A lagging link is an htb rate limit on traffic into a host.

Loopback mode: every host is an address 127.0.<k>.<n> on the root namespace; processes of all
hosts share one network, so partitions and lagging links are unavailable.
"""

from __future__ import annotations

import ctypes
import os
import subprocess

import procs

CLONE_NEWNET = 0x40000000
# The namespace this runner started in: labs are built from it and it returns there between runs.
_ROOT_NS = os.open("/proc/self/ns/net", os.O_RDONLY)
SUBNET = "10.78.0"
CLIENT_HOST = 100


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _tc(ns, *args, check=True):
    r = subprocess.run(["ip", "netns", "exec", ns, "tc", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} in {ns}: {r.stderr.strip()}")
    return r


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def namespaces_available():
    name = f"chaosprobe{os.getpid()}"
    if _ip("netns", "add", name, check=False).returncode != 0:
        return False
    _ip("netns", "del", name, check=False)
    return True


class Host:
    def __init__(self, idx, ip, ns=None, sw_if=None):
        self.idx = idx  # 1-based
        self.ip = ip
        self.ns = ns
        self.sw_if = sw_if


class Lab:
    def __init__(self, n_hosts, mode, tag):
        self.mode = mode
        self.tag = tag
        self.hosts = []
        self.procs = []
        self.sw = None
        self.client_ns = None
        self.cut_state = {}  # host idx -> set of peer ips its egress drops
        self.slow = set()
        if mode == "netns":
            self._build(n_hosts)
        else:
            base = 78 + (os.getpid() % 100)
            for i in range(1, n_hosts + 1):
                self.hosts.append(Host(i, f"127.{base}.0.{i}"))
            self.client_ip = "127.0.0.1"

    # -- construction -------------------------------------------------------------------------

    def _build(self, n):
        t = self.tag
        self.sw = f"{t}sw"
        _ip("netns", "add", self.sw)
        _ip("-n", self.sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.sw, "link", "set", "br0", "up")
        _ip("-n", self.sw, "link", "set", "lo", "up")
        for i in list(range(1, n + 1)) + [CLIENT_HOST]:
            h = self._plug(i)
            if i == CLIENT_HOST:
                self.client_ns = h.ns
                self.client_ip = h.ip
            else:
                self.hosts.append(h)
                self._init_tc(h)

    def _plug(self, i):
        """Namespace of host i, with eth0 on the switch's bridge at SUBNET.i."""
        t = self.tag
        ns = f"{t}h{i}"
        a, b = f"{t}a{i}"[-15:], f"{t}b{i}"[-15:]
        _ip("netns", "add", ns)
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", ns)
        _ip("link", "set", b, "netns", self.sw)
        _ip("-n", ns, "link", "set", a, "name", "eth0")
        ip = f"{SUBNET}.{i}"
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.sw, "link", "set", b, "master", "br0")
        _ip("-n", self.sw, "link", "set", b, "up")
        return Host(i, ip, ns, b)

    def _init_tc(self, h):
        # Default class: unlimited. Class 1:2 feeds a queue of length 0: a black hole.
        _tc(h.ns, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1")
        _tc(h.ns, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit")
        _tc(h.ns, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:2", "htb", "rate", "1mbit")
        _tc(h.ns, "qdisc", "add", "dev", "eth0", "parent", "1:2", "handle", "2:", "pfifo", "limit", "0")
        self.cut_state[h.idx] = {}

    def enter_client_namespace(self):
        """Moves this thread (and every thread it starts later) into the clients' namespace."""
        if self.client_ns is None:
            return
        fd = os.open(f"/var/run/netns/{self.client_ns}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def leave_client_namespace(self):
        if self.client_ns is not None:
            _setns(_ROOT_NS)

    # -- processes ----------------------------------------------------------------------------

    def spawn(self, host, argv, name, log_path):
        if self.mode == "netns":
            argv = ["ip", "netns", "exec", self.hosts[host - 1].ns, *argv]
        # New session: a Ctrl-C in the terminal reaches only this runner, which stops its
        # children itself, in order.
        proc = procs.spawn(argv, name, log_path, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for p in reversed(self.procs):
            p.term(timeout=2.0)
        self.procs = []

    # -- faults -------------------------------------------------------------------------------

    @property
    def partitions(self):
        return self.mode == "netns"

    def drop(self, src, dst_ips):
        """Host `src` stops sending to the given addresses (one direction)."""
        h = self.hosts[src - 1]
        cur = self.cut_state[h.idx]
        for ip in dst_ips:
            if ip in cur:
                continue
            pref = str(10 + len(cur) + 1)
            _tc(h.ns, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", pref,
                "u32", "match", "ip", "dst", f"{ip}/32", "flowid", "1:2")
            cur[ip] = pref

    def drop_port(self, src, dst_ip, port):
        """Host `src` stops sending to one TCP port of `dst_ip` (its other traffic flows), e.g.
        a coordinator losing its path to a Redis while its peers still reach it."""
        h = self.hosts[src - 1]
        cur = self.cut_state[h.idx]
        key = f"{dst_ip}:{port}"
        if key in cur:
            return
        pref = str(10 + len(cur) + 1)
        _tc(h.ns, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", pref,
            "u32", "match", "ip", "dst", f"{dst_ip}/32", "match", "ip", "dport", str(port), "0xffff",
            "flowid", "1:2")
        cur[key] = pref

    def undrop(self, src):
        h = self.hosts[src - 1]
        for pref in list(self.cut_state[h.idx].values()):
            _tc(h.ns, "filter", "del", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", pref, check=False)
        self.cut_state[h.idx] = {}

    def partition(self, host, others, both=True):
        """Cuts `host` from the hosts in `others` (the clients still reach everyone)."""
        self.drop(host, [self.hosts[o - 1].ip for o in others])
        if both:
            for o in others:
                self.drop(o, [self.hosts[host - 1].ip])

    def heal_all(self):
        if not self.partitions:
            return  # loopback: nothing was cut or slowed (no tc state to clear)
        for h in self.hosts:
            self.undrop(h.idx)
        for idx in list(self.slow):
            self.unslow(idx)

    def slow_in(self, host, rate="64kbit"):
        """Limits the bandwidth of everything sent into `host` (its bridge-side interface)."""
        h = self.hosts[host - 1]
        r = _tc(self.sw, "qdisc", "add", "dev", h.sw_if, "root", "tbf", "rate", rate, "burst", "4kb",
                "latency", "2s", check=False)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        self.slow.add(host)

    def unslow(self, host):
        h = self.hosts[host - 1]
        _tc(self.sw, "qdisc", "del", "dev", h.sw_if, "root", check=False)
        self.slow.discard(host)

    def add_host(self):
        """One more host (for a fourth coordinator)."""
        i = len(self.hosts) + 1
        if self.mode != "netns":
            base = self.hosts[0].ip.rsplit(".", 1)[0]
            self.hosts.append(Host(i, f"{base}.{i}"))
            return self.hosts[-1]
        h = self._plug(i)
        self.hosts.append(h)
        self._init_tc(h)
        return h

    # -- teardown -----------------------------------------------------------------------------

    def destroy(self):
        self.stop_all()
        if self.mode != "netns":
            return
        self.leave_client_namespace()
        for h in self.hosts:
            _ip("netns", "del", h.ns, check=False)
        if self.client_ns:
            _ip("netns", "del", self.client_ns, check=False)
        if self.sw:
            _ip("netns", "del", self.sw, check=False)
