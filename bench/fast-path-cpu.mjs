// CPU per call of the pre-Fastify hot path (a validated GET /protected answered from the
// session cache), two builds interleaved in one process, no network and no wrk: what a
// change to the fast path costs, measurable even on a busy machine.
// Run: npm run build, then node bench/fast-path-cpu.mjs dist <other build>/dist
// two builds interleaved in one process: node fast-path-cpu.mjs <distA> <distB>
import { randomFillSync } from "node:crypto";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [a, b] = process.argv.slice(2).map((dir) => pathToFileURL(resolve(dir)).href);
// The build at 4907c7a had createSessionCache(stores, options) and setChannelUp; later builds take a channel.
async function setup(dist) {
  const { buildServer } = await import(`${dist}/server/app.js`);
  const { loadConfig } = await import(`${dist}/core/config.js`);
  const { createMemoryStores } = await import(`${dist}/stores/memory/memory-store.js`);
  const { createSessionCache } = await import(`${dist}/stores/cached/session-cache.js`);
  let stores;
  try {
    const { createManualChannel } = await import(`${dist}/stores/revocation-channel.js`);
    stores = createSessionCache(createMemoryStores(), createManualChannel({ up: true }), { clock: { now: () => Date.now() } }).stores;
  } catch {
    const cache = createSessionCache(createMemoryStores(), { clock: { now: () => Date.now() } });
    cache.setChannelUp(true);
    stores = cache.stores;
  }
  const { createPasswordHasher } = await import(`${dist}/core/passwords.js`);
  const server = await buildServer({
    config: loadConfig({ LOG_LEVEL: "silent" }),
    stores,
    runtime: { clock: { now: () => Date.now() }, random: (x) => void randomFillSync(x) },
    hasher: createPasswordHasher({ concurrency: 1 }),
    logger: false,
  });
  const reg = await server.app.inject({
    method: "POST",
    url: "/register",
    payload: { username: "bench" + Math.random().toString(36).slice(2, 8), password: "a perfectly fine passphrase" },
  });
  const cookie = /^(sid=[^;]*)/.exec(reg.headers["set-cookie"])[1];
  await server.app.inject({ url: "/protected", headers: { cookie } }); // fill the cache
  const req = { method: "GET", url: "/protected", headers: { host: "localhost:3000", cookie: `a=1; ${cookie}; b=2`, accept: "*/*" } };
  const res = { writeHead() {}, end() {} };
  if (!server.fastPath(req, res)) throw new Error("fast path did not answer");
  return () => server.fastPath(req, res);
}
const runA = await setup(a),
  runB = await setup(b);
const N = 500_000;
function measure(run) {
  const start = process.cpuUsage();
  for (let i = 0; i < N; i += 1) run();
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / N; // ns per call
}
for (let i = 0; i < 2; i += 1) {
  measure(runA);
  measure(runB);
} // warm up
const ra = [],
  rb = [];
for (let i = 0; i < 7; i += 1) {
  ra.push(measure(runA));
  rb.push(measure(runB));
}
const med = (x) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)];
console.log(
  JSON.stringify({
    A: a,
    B: b,
    nsPerCallA: ra.map(Math.round),
    nsPerCallB: rb.map(Math.round),
    medianA: Math.round(med(ra)),
    medianB: Math.round(med(rb)),
  }),
);
process.exit(0);
