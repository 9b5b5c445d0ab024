// ioredis against the Sentinel port: discover the master, write, survive a master kill.
// Usage: node ioredis.js SENTINELS NAME SECONDS [detector]
// Prints "MASTER host:port" when the master written to changes, then "RESULT <json>".
// Exit 0 once 5 writes reached a second master; with COMPAT_WRITES=<k> in the environment,
// once k writes went through (no master change expected).
const Redis = require("ioredis");

const [sentinelsArg, name, secondsArg, variant] = process.argv.slice(2);
const sentinels = sentinelsArg.split(",").map((a) => {
  const i = a.lastIndexOf(":");
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
});
const redis = new Redis({
  sentinels,
  name,
  failoverDetector: variant === "detector",
  sentinelRetryStrategy: (times) => Math.min(times * 10, 1000),
  retryStrategy: (times) => Math.min(times * 50, 500),
  lazyConnect: false,
});
redis.on("error", () => {});

(async () => {
  const end = Date.now() + Number(secondsArg) * 1000;
  const masters = [];
  const steady = Number(process.env.COMPAT_WRITES || 0);
  const done = () => (steady ? ok >= steady : masters.length > 1 && okAfter >= 5);
  let errors = 0, okAfter = 0, n = 0, ok = 0;
  while (Date.now() < end) {
    n += 1;
    try {
      await redis.set("compat:ioredis", String(n));
      const s = redis.stream;
      const addr = `${s.remoteAddress}:${s.remotePort}`;
      if (masters[masters.length - 1] !== addr) {
        masters.push(addr);
        console.log(`MASTER ${addr}`);
      }
      ok += 1;
      if (masters.length > 1) okAfter += 1;
      if (done()) break;
    } catch (e) {
      if (errors++ % 10 === 0) console.log(`ERROR ${e.message}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`RESULT ${JSON.stringify({ masters, errors, last: n, okAfter, ok })}`);
  redis.disconnect();
  process.exit(done() ? 0 : 1);
})();
