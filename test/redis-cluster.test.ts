import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startRedisCluster } from "../src/stores/redis/redis-test-support.js";
import { serviceSkip } from "../src/testing/services.js";
import type { LatchProcess } from "./support/latch-process.js";
import { createTestDatabase } from "./support/postgres-database.js";
import type { TestDatabase } from "./support/postgres-database.js";
import {
  latchEnv,
  redisBinariesSkip,
  redisCli,
  sessionIdOf,
  sessionWorksOnBoth,
  signIn,
  signOutDelays,
  signUp,
  startTracked,
  stopLatch,
  summary,
  throttleIsShared,
  waitForRedis,
} from "./support/several-latches.js";

/**
 * The two-process test on a three-master Redis Cluster of this test's own
 * (redis-server in cluster mode on free ports, joined with
 * `redis-cli --cluster create`), with REDIS_URL=redis+cluster://… naming all
 * three. The Redis store's conformance suite runs on such a cluster too, in
 * src/stores/redis/redis-store.test.ts ("redis cluster").
 */

const skip = (await serviceSkip("postgres")) || redisBinariesSkip();

describe("two Latch processes on a three-master Redis Cluster", { skip }, () => {
  let db: TestDatabase | undefined;
  let cluster: { url: string; stop(): Promise<void> } | undefined;
  let a: LatchProcess | undefined;
  let b: LatchProcess | undefined;
  const pair = () => ({ a: a!, b: b! });

  before(async () => {
    db = await createTestDatabase("latch_mp");
    cluster = await startRedisCluster();
    assert.match(cluster.url, /^redis\+cluster:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
    const env = latchEnv(db.url, cluster.url);
    a = await startTracked(env);
    b = await startTracked(env);
    await waitForRedis(a.url, "ok");
    await waitForRedis(b.url, "ok");
  });

  after(async () => {
    await stopLatch(a);
    await stopLatch(b);
    await cluster?.stop();
    await db?.drop();
  });

  it("keeps each session in its user's hash slot on the cluster", async () => {
    const ports = /^redis\+cluster:\/\/(.*)$/
      .exec(cluster!.url)![1]!
      .split(",")
      .map((node) => node.split(":")[1]!);
    const user = await signUp(a!.url);
    const sessions = [user, await signIn(b!.url, user.username), await signIn(a!.url, user.username)];
    const tag = sessionIdOf(user).slice(0, 8);
    for (const session of sessions) assert.equal(sessionIdOf(session).slice(0, 8), tag, "every session of a user has the user's slot tag");
    // One hash per user, on the one master that owns its slot; -c follows MOVED from any seed.
    const key = `latch:{${tag}}`;
    for (const session of sessions)
      assert.equal((await redisCli(["-c", "-p", ports[0]!, "HEXISTS", key, sessionIdOf(session).slice(8)])).trim(), "1");
    const holders = [];
    for (const port of ports) if ((await redisCli(["-p", port, "--scan", "--pattern", key])).includes(key)) holders.push(port);
    assert.equal(holders.length, 1, `the key lives on exactly one master: ${holders.join(", ")}`);
  });

  it("accepts a session made on A on B, and one made on B on A", async () => {
    await sessionWorksOnBoth(pair());
  });

  it("refuses on B a session signed out on A within one second (and the reverse)", async () => {
    const refusals = await signOutDelays(pair(), 5);
    console.log(`# cluster: cross-process sign-out, first refusal after the acknowledgement: ${summary(refusals)}`);
  });

  it("enforces one sign-in throttle across both processes", async () => {
    await throttleIsShared(pair());
  });
});
