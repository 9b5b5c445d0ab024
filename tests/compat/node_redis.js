// node-redis (createSentinel) against the Sentinel port: discover the master, write, follow a
// master change. Usage: node node_redis.js SENTINELS NAME SECONDS
// Prints "MASTER host:port" when the master written to changes, then "RESULT <json>".
// Exit 0 once 5 writes reached a second master.
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
  let errors = 0, okAfter = 0, n = 0;
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
      if (masters.length > 1 && ++okAfter >= 5) break;
    } catch (e) {
      if (errors++ % 10 === 0) console.log(`ERROR ${e.message}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`RESULT ${JSON.stringify({ masters, errors, last: n, okAfter })}`);
  try { await sentinel.close(); } catch (e) {}
  process.exit(masters.length > 1 ? 0 : 1);
})();
