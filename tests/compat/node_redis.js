// node-redis (createSentinel) against the Sentinel port: discover the master, write, follow a
// master change. Usage: node node_redis.js SENTINELS NAME SECONDS
// Prints "MASTER host:port" when the master written to changes, then "RESULT <json>".
// Exit 0 once 5 writes reached a second master; with COMPAT_WRITES=<k> in the environment,
// once k writes went through (no master change expected).
const { createSentinel } = require("redis");

const [sentinelsArg, name, secondsArg] = process.argv.slice(2);
const sentinelRootNodes = sentinelsArg.split(",").map((a) => {
  const i = a.lastIndexOf(":");
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
});

(async () => {
  const sentinel = createSentinel({ name, sentinelRootNodes });
  sentinel.on("error", () => {});
  await sentinel.connect();
  const end = Date.now() + Number(secondsArg) * 1000;
  const masters = [];
  const steady = Number(process.env.COMPAT_WRITES || 0);
  const done = () => (steady ? ok >= steady : masters.length > 1 && okAfter >= 5);
  let errors = 0, okAfter = 0, n = 0, ok = 0;
  while (Date.now() < end) {
    n += 1;
    try {
      await sentinel.set("compat:node-redis", String(n));
      const m = sentinel.getMasterNode();
      const addr = m ? `${m.host}:${m.port}` : "?";
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
  try { await sentinel.close(); } catch (e) {}
  process.exit(done() ? 0 : 1);
})();
