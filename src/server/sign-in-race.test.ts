import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createPasswordHasher } from "../core/passwords.js";
import type { PasswordHasher } from "../core/passwords.js";
import type { Stores } from "../core/store.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { openSqliteStores } from "../stores/sqlite/index.js";
import { createTestServer, TEST_PASSWORD } from "../testing/test-server.js";

const NEW_PASSWORD = "a brand new passphrase";

/**
 * The real argon2id hasher, with a gate: once armed, the next verification
 * of `password` does its work and then waits until released. That holds a
 * sign-in between "the old hash verified" and "its session is written", the
 * window a password change must not be able to fall into.
 */
function gatedHasher(): { hasher: PasswordHasher; arm(password: string): { held: Promise<void>; release(): void } } {
  const real = createPasswordHasher({ concurrency: 2 });
  let armed: { password: string; reached: () => void; gate: Promise<void> } | undefined;
  return {
    hasher: {
      hash: (password) => real.hash(password),
      needsRehash: (stored) => real.needsRehash(stored),
      async verify(stored, password) {
        const ok = await real.verify(stored, password);
        const hold = armed;
        if (hold !== undefined && hold.password === password) {
          armed = undefined;
          hold.reached();
          await hold.gate;
        }
        return ok;
      },
    },
    arm(password) {
      let release!: () => void;
      let reached!: () => void;
      const held = new Promise<void>((resolve) => (reached = resolve));
      const gate = new Promise<void>((resolve) => (release = resolve));
      armed = { password, reached, gate };
      return { held, release };
    },
  };
}

const dir = mkdtempSync(join(tmpdir(), "latch-sign-in-race-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const storeKinds: Array<[string, () => Stores]> = [
  ["memory", () => createMemoryStores()],
  ["SQLite", () => openSqliteStores({ path: join(dir, `race-${Date.now()}-${Math.random()}.db`) })],
];

for (const [kind, makeStores] of storeKinds) {
  describe(`a sign-in racing a password change (${kind})`, () => {
    for (const route of ["/login", "/token"] as const) {
      it(`gives no session to POST ${route} whose old-password check finished before the change but whose session would come after it`, async () => {
        const gated = gatedHasher();
        const t = await createTestServer({ stores: makeStores(), hasher: gated.hasher });
        try {
          const owner = await t.register();
          // The attacker's sign-in with the old password: verified, then held.
          const { held, release } = gated.arm(TEST_PASSWORD);
          const attacker = t.app.inject({ method: "POST", url: route, payload: { username: owner.username, password: TEST_PASSWORD } });
          await held;
          // Meanwhile the owner changes the password (which ends every other session).
          const changed = await t.app.inject({
            method: "POST",
            url: "/password",
            ...t.auth(owner),
            payload: { currentPassword: TEST_PASSWORD, newPassword: NEW_PASSWORD },
          });
          assert.equal(changed.statusCode, 200, changed.body);
          release();
          const answer = await attacker;
          assert.equal(answer.statusCode, 401, `the held sign-in got ${answer.statusCode}: ${answer.body}`);
          assert.equal(answer.json().error.code, "invalid_credentials");
          assert.equal(answer.headers["set-cookie"], undefined);
          // The owner's own session (rotated by the change) is the only one left.
          const rotated = changed.json() as { csrfToken: string };
          const cookie = /sid=([^;]+)/.exec(String(changed.headers["set-cookie"]))![1]!;
          const sessions = await t.app.inject({
            url: "/sessions",
            cookies: { sid: cookie },
            headers: { "x-csrf-token": rotated.csrfToken },
          });
          assert.equal(sessions.json().sessions.length, 1, sessions.body);
          // And the new password works.
          assert.equal(
            (await t.app.inject({ method: "POST", url: "/login", payload: { username: owner.username, password: NEW_PASSWORD } }))
              .statusCode,
            200,
          );
        } finally {
          await t.close();
        }
      });
    }
  });
}
