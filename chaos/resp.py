"""A minimal blocking RESP client (RESP2, and the RESP3 types HELLO 3 brings) with no
third-party packages: chaos's pollers, samplers and event listeners, and the benchmarks in
bench/ and tests/compat/ (which put this directory on sys.path). Error replies are returned
as RespError values, not raised."""

import socket


def encode(*args):
    """One command as a RESP array of bulk strings (str, bytes or anything str() takes)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def call(host, port, *args, timeout=2.0):
    """One command on a fresh connection; its reply."""
    c = Conn(host, port, timeout=timeout)
    try:
        return c.call(*args)
    finally:
        c.close()


class RespError(Exception):
    pass


def raised(reply):
    """The reply, raised instead if it is an error reply (for callers that want exceptions)."""
    if isinstance(reply, RespError):
        raise reply
    return reply


class Conn:
    def __init__(self, host, port, timeout=0.5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *args):
        self.sock.sendall(encode(*args))

    def call(self, *args):
        self.send(*args)
        return self.read()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if t in (b"*", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            return {self.read(): self.read() for _ in range(n)}
        if t == b"_":
            return None
        raise ConnectionError(f"bad RESP type {t!r}")
