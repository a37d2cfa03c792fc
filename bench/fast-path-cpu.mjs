// CPU per call of the pre-Fastify hot path (a validated GET /protected answered from the
// session cache), two builds interleaved in one process, no network and no wrk: what a
// change to the fast path costs, measurable even on a busy machine.
// Run: npm run build, then node bench/fast-path-cpu.mjs dist <other build>/dist
// BENCH_SESSIONS=100000 puts that many sessions (two per user) in each build's cache and
// sends a uniformly random one per call, as the many-sessions scenario does over HTTP:
// the hit path when the cache is larger than the CPU's caches.
// two builds interleaved in one process: node fast-path-cpu.mjs <distA> <distB>
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1);
const scratch = [];
const [a, b] = process.argv.slice(2).map((dir) => pathToFileURL(resolve(dir)).href);
// The build at 4907c7a had createSessionCache(stores, options) and setChannelUp; later builds take a channel.
async function setup(dist) {
  const { buildServer } = await import(`${dist}/server/app.js`);
  const { loadConfig } = await import(`${dist}/core/config.js`);
  const { createMemoryStores } = await import(`${dist}/stores/memory/memory-store.js`);
  const { createSessionCache } = await import(`${dist}/stores/cached/session-cache.js`);
  let stores;
  if (SESSIONS > 1) {
    // The many-sessions case runs on what `latch serve` opens on SQLite (the cache over a file).
    const { openStores } = await import(`${dist}/stores/open-stores.js`);
    const dir = mkdtempSync(join(tmpdir(), "latch-fast-path-"));
    scratch.push(dir);
    stores = await openStores(loadConfig({ DATABASE_URL: `sqlite:${join(dir, "latch.db")}`, LOG_LEVEL: "silent" }));
  } else {
    try {
      const { createManualChannel } = await import(`${dist}/stores/revocation-channel.js`);
      stores = createSessionCache(createMemoryStores(), createManualChannel({ up: true }), { clock: { now: () => Date.now() } }).stores;
    } catch {
      const cache = createSessionCache(createMemoryStores(), { clock: { now: () => Date.now() } });
      cache.setChannelUp(true);
      stores = cache.stores;
    }
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
  const res = { writeHead() {}, end() {} };
  const requestFor = (c) => ({
    method: "GET",
    url: "/protected",
    headers: { host: "localhost:3000", cookie: `a=1; ${c}; b=2`, accept: "*/*" },
  });
  if (SESSIONS <= 1) {
    const req = requestFor(cookie);
    if (!server.fastPath(req, res)) throw new Error("fast path did not answer");
    return () => server.fastPath(req, res);
  }
  const { context } = server;
  const requests = [];
  const now = Date.now();
  for (let u = 0; u < SESSIONS / 2; u += 1) {
    const id = `00000000-0000-7000-8000-${u.toString(16).padStart(12, "0")}`;
    const username = `many.${u}`;
    await stores.users.createUser({
      ...{ id, username, usernameKey: username, email: null, emailKey: null, emailVerified: false },
      ...{ roles: ["user"], mfa: false, passwordHash: "x", createdAt: now, updatedAt: now },
    });
    for (let k = 0; k < 2; k += 1) {
      const created = await context.sessions.create(id, { userAgent: null, ipAddress: null });
      await context.sessions.validate(created.token); // into the cache
      requests.push(requestFor(`sid=${created.token}`));
    }
  }
  for (const req of requests) if (!server.fastPath(req, res)) throw new Error("fast path did not answer");
  // A fixed uniform sequence, the same for both builds.
  const order = new Uint32Array(1 << 20);
  let x = 2463534242;
  for (let i = 0; i < order.length; i += 1) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    order[i] = x % requests.length;
  }
  // Each call's Cookie header is a fresh string, as the HTTP parser makes one per request
  // (a prebuilt string per session would be a cold read that a real request never pays).
  // Read from one contiguous buffer (every header has the same length), as from a socket.
  const width = requests[0].headers.cookie.length;
  const bytes = Buffer.from(requests.map((r) => r.headers.cookie).join(""), "latin1");
  const req = requestFor("");
  let at = 0;
  return () => {
    const start = order[at++ & (order.length - 1)] * width;
    req.headers.cookie = bytes.toString("latin1", start, start + width);
    return server.fastPath(req, res);
  };
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
for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
process.exit(0);
