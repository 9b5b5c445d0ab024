"""redis-py subscribed to a node's Sentinel port while the node goes through a TILT.

Usage: tilt_pubsub.py HOST PORT SECONDS

Two subscribers, as client code writes them: PSUBSCRIBE * over RESP2 and SUBSCRIBE +tilt
-tilt over RESP3 (push frames). Prints "ready" once both are subscribed, then one line per
+tilt/-tilt message either receives: "<protocol> <type> <pattern> <channel> <data>" (other
channels of the pattern are skipped). Exit code 0 once each has received +tilt then -tilt,
1 if they did not within SECONDS, got anything else on those two channels, or lost their
connection (which redis-py would quietly re-establish, losing what was published meanwhile).
"""

import sys
import time

import redis

WANT = ["+tilt", "-tilt"]


def subscribed(p, confirmations):
    """Reads the subscription confirmations; False if they do not come."""
    got = 0
    deadline = time.monotonic() + 10
    while got < confirmations and time.monotonic() < deadline:
        m = p.get_message(timeout=1)
        if m and m["type"] in ("subscribe", "psubscribe"):
            got += 1
    return got == confirmations


def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    # The clients are kept: a client collected closes its pool's connections, the
    # subscriber's included.
    clients, subs, socks = [], {}, {}
    for proto in (2, 3):
        r = redis.Redis(host=host, port=port, protocol=proto, decode_responses=True)
        clients.append(r)
        p = r.pubsub()
        if proto == 2:
            p.psubscribe("*")
            n = 1
        else:
            p.subscribe(*WANT)
            n = 2
        if not subscribed(p, n):
            print(f"RESP{proto}: no subscription confirmation", flush=True)
            return 1
        subs[proto] = p
        socks[proto] = p.connection._sock
    print("ready", flush=True)
    seen = {2: [], 3: []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(s != WANT for s in seen.values()):
        for proto, p in subs.items():
            m = p.get_message(timeout=0.05)
            # redis-py reconnects and subscribes again by itself: what was published in
            # between is lost without a word, so a dropped connection fails the run.
            if p.connection._sock is not socks[proto]:
                print(f"RESP{proto}: the connection was dropped", flush=True)
                return 1
            if not m or m["channel"] not in WANT:
                continue
            print(proto, m["type"], m["pattern"], m["channel"], m["data"], flush=True)
            seen[proto].append(m["channel"])
            if seen[proto] != WANT[: len(seen[proto])]:
                print(f"RESP{proto}: unexpected order {seen[proto]}", flush=True)
                return 1
    for p in subs.values():
        p.close()
    for r in clients:
        r.close()
    return 0 if all(s == WANT for s in seen.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
