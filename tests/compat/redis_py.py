"""redis-py against the Sentinel port: discover the master, write, survive a master kill.

Usage: redis_py.py SENTINELS NAME MODE PROTOCOL SECONDS
  SENTINELS  comma-separated host:port list
  MODE       sync | async
  PROTOCOL   2 | 3

Writes SET compat:py <n> every 100 ms through Sentinel.master_for(). Prints
"MASTER host:port" whenever the master it wrote to changes, and ends with one line
"RESULT <json>" after it has written 5 times to a second master (or when SECONDS run out).
Exit code 0 when a second master was reached, 1 otherwise.

With COMPAT_WRITES=<k> in the environment it stops after k successful writes instead (no
master change expected) and exits 0 when they all went through.
"""

import asyncio
import json
import os
import sys
import time

import redis
from redis.sentinel import Sentinel
from redis.asyncio.sentinel import Sentinel as AsyncSentinel

KEY = "compat:py"
STEADY = int(os.environ.get("COMPAT_WRITES", "0"))


def done(masters, ok, ok_after):
    """Whether the run reached its goal."""
    if STEADY:
        return ok >= STEADY
    return len(masters) > 1 and ok_after >= 5


def parse(argv):
    sentinels = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in argv[1].split(","))]
    return sentinels, argv[2], argv[3], int(argv[4]), float(argv[5])


def main_sync(sentinels, name, proto, seconds):
    s = Sentinel(sentinels, socket_timeout=0.5, protocol=proto)
    m = s.master_for(name, socket_timeout=0.5, protocol=proto)
    return loop(lambda n: (m.set(KEY, n), m.connection_pool.get_master_address())[1], seconds)


def loop(write, seconds):
    masters, errors, ok_after, ok = [], 0, 0, 0
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
        try:
            addr = write(n)
            addr = "%s:%s" % addr
            ok += 1
            if not masters or masters[-1] != addr:
                masters.append(addr)
                print("MASTER " + addr, flush=True)
            if len(masters) > 1:
                ok_after += 1
            if done(masters, ok, ok_after):
                break
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError,
                redis.sentinel.MasterNotFoundError) as e:
            errors += 1
            if errors % 10 == 1:
                print("ERROR %s: %s" % (type(e).__name__, e), flush=True)
        time.sleep(0.1)
    return {"masters": masters, "errors": errors, "last": n, "ok_after": ok_after, "ok": ok}


async def main_async(sentinels, name, proto, seconds):
    s = AsyncSentinel(sentinels, socket_timeout=0.5, protocol=proto)
    m = s.master_for(name, socket_timeout=0.5, protocol=proto)
    masters, errors, ok_after, ok = [], 0, 0, 0
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
        try:
            await m.set(KEY, n)
            addr = "%s:%s" % (await m.connection_pool.get_master_address())
            ok += 1
            if not masters or masters[-1] != addr:
                masters.append(addr)
                print("MASTER " + addr, flush=True)
            if len(masters) > 1:
                ok_after += 1
            if done(masters, ok, ok_after):
                break
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError,
                redis.sentinel.MasterNotFoundError) as e:
            errors += 1
            if errors % 10 == 1:
                print("ERROR %s: %s" % (type(e).__name__, e), flush=True)
        await asyncio.sleep(0.1)
    return {"masters": masters, "errors": errors, "last": n, "ok_after": ok_after, "ok": ok}


def main():
    sentinels, name, mode, proto, seconds = parse(sys.argv)
    if mode == "sync":
        result = main_sync(sentinels, name, proto, seconds)
    else:
        result = asyncio.run(main_async(sentinels, name, proto, seconds))
    print("RESULT " + json.dumps(result), flush=True)
    sys.exit(0 if done(result["masters"], result["ok"], result["ok_after"]) else 1)


if __name__ == "__main__":
    main()
