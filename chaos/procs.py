"""Processes the Python tools start (chaos runs, benchmarks), stopped by pid only, and the
ports they listen on. Shared by chaos/, bench/ and tests/compat/ (the last two put this
directory on sys.path)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


class Proc:
    """A process this run started; stopped by pid only."""

    def __init__(self, popen, name, log):
        self.popen = popen
        self.pid = popen.pid
        self.name = name
        self.log = log

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self):
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def term(self, timeout=3.0):
        if not self.alive():
            return
        # A stopped process cannot handle SIGTERM.
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()


def spawn(argv, name, log_path, **popen_args):
    """Starts argv with stdin closed and its output appended to log_path (stderr always,
    stdout unless popen_args give another)."""
    with open(log_path, "ab") as log:
        popen_args.setdefault("stdout", log)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log, **popen_args)
    return Proc(p, name, log_path)


def stop_all(procs, timeout=10.0):
    """SIGTERM to every process at once, then waits for each (SIGKILL after timeout)."""
    for p in procs:
        p.signal(signal.SIGCONT)
        p.signal(signal.SIGTERM)
    for p in procs:
        p.term(timeout)


def free_port():
    """A TCP port free on 127.0.0.1 at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0):
    """Whether host:port accepted a connection within timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return True
        except OSError:
            time.sleep(0.05)
    return False
