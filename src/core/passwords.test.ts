import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import bcrypt from "bcryptjs";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { createAccounts } from "./accounts.js";
import { LatchError } from "./errors.js";
import { createLimiter, createPasswordHasher, HASH_NICE_INCREMENT } from "./passwords.js";
import { createFakeClock } from "./runtime.js";

describe("password hashing", () => {
  const hasher = createPasswordHasher({ concurrency: 2 });

  it("hashes with argon2id at m=19456, t=2, p=1 and verifies", async () => {
    const phc = await hasher.hash("correct horse battery staple");
    assert.match(phc, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.equal(await hasher.verify(phc, "correct horse battery staple"), true);
    assert.equal(await hasher.verify(phc, "wrong"), false);
    assert.equal(hasher.needsRehash(phc), false);
  });

  it("hashes on threads whose priority is below the event loop's (Linux)", async (t) => {
    if (!existsSync("/proc/self/task")) return t.skip("no /proc: not Linux");
    const niceOf = (tid: string): number => Number(readFileSync(`/proc/self/task/${tid}/stat`, "utf8").split(") ")[1]!.split(" ")[16]);
    // Sample the threads while a hash is running.
    const running = hasher.hash("a hash to watch running");
    await new Promise((resolve) => setTimeout(resolve, 5));
    const nices = readdirSync("/proc/self/task").map(niceOf);
    await running;
    assert.equal(niceOf(String(process.pid)), 0, "the event loop keeps its priority");
    assert.ok(nices.includes(HASH_NICE_INCREMENT), `a thread at nice ${HASH_NICE_INCREMENT}: ${nices.join(",")}`);
  });

  it("verifies legacy bcrypt hashes ($2a$, $2b$, $2y$) and marks them for rehash", async () => {
    const b = bcrypt.hashSync("legacy password", 4);
    for (const prefix of ["$2a$", "$2b$", "$2y$"]) {
      const legacy = prefix + b.slice(4);
      assert.equal(await hasher.verify(legacy, "legacy password"), true, prefix);
      assert.equal(await hasher.verify(legacy, "not it"), false, prefix);
      assert.equal(hasher.needsRehash(legacy), true);
    }
  });

  it("returns false, never throws, for a malformed stored hash", async () => {
    for (const junk of ["", "plaintext", "$argon2id$garbage", "$2b$10$short"]) assert.equal(await hasher.verify(junk, "x"), false, junk);
  });

  it("upgrades a bcrypt hash to argon2id on the next successful sign-in", async () => {
    const stores = createMemoryStores();
    const clock = createFakeClock(Date.now());
    const accounts = createAccounts({ users: stores.users, hasher, runtime: { clock, random: (bytes) => void randomFillSync(bytes) } });
    await stores.users.createUser({
      id: "legacy",
      username: "legacy",
      usernameKey: "legacy",
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: bcrypt.hashSync("an old password", 4).replace(/^\$2b\$/, "$2y$"),
      roles: ["user"],
      mfa: false,
      createdAt: 1,
      updatedAt: 1,
    });
    const user = await accounts.findByLogin("legacy");
    assert.equal(await accounts.checkCredentials(user, "an old password"), true);
    const stored = await stores.users.findUserById("legacy");
    assert.match(stored!.passwordHash, /^\$argon2id\$/);
    assert.equal(await accounts.checkCredentials(stored, "an old password"), true);
  });
});

describe("the hashing limiter", () => {
  it("never runs more tasks at once than its concurrency", async () => {
    const limit = createLimiter(2);
    let active = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        limit(async () => {
          active += 1;
          peak = Math.max(peak, active);
          await new Promise((r) => setImmediate(r));
          active -= 1;
        }),
      ),
    );
    assert.equal(peak, 2);
  });

  it("refuses with 503 unavailable, at once, past its queue bound", async () => {
    const limit = createLimiter(1, { maxQueue: 2 });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const running = [limit(() => gate), limit(() => gate), limit(() => gate)];
    await assert.rejects(
      limit(() => gate),
      (error: unknown) => error instanceof LatchError && error.code === "unavailable" && error.status === 503,
    );
    release();
    await Promise.all(running);
    await limit(async () => {}); // the queue drained: accepted again
  });
});
