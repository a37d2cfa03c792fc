import { parseArgs } from "node:util";
import { createAccounts, normaliseRoles, refuseRemovingLastAdmin } from "../core/accounts.js";
import type { Config } from "../core/config.js";
import { isLatchError, LatchError } from "../core/errors.js";
import { isUuid, uuidv7 } from "../core/ids.js";
import { loginKey } from "../core/identity.js";
import { createPasswordHasher } from "../core/passwords.js";
import type { Stores, UserRecord } from "../core/store.js";
import { openStores } from "../stores/open-stores.js";
import { systemRuntime } from "./serve.js";

/** Drops the stores' own log lines (Redis going away and coming back): a command says what happened in its answer. */
export const QUIET = { warn: (): void => {}, info: (): void => {} };

/** A refusal the operator can fix: printed as one line, exit code 1. */
export class UsageError extends Error {}

export const ADMIN_USAGE = `Usage:
  latch users create <username> [--email <email>] [--admin]   (password from LATCH_PASSWORD or stdin)
  latch users roles <username|id> <role,role,...>             (sets the roles; "user" is always kept)
  latch users revoke-sessions <username|id>
  latch users reset-mfa <username|id>                         (removes TOTP, recovery codes and passkeys; ends their sessions)
  latch users delete <username|id>
  latch sessions purge                                        (deletes expired sessions now)
  latch sessions revoke-all                                   (ends every session of every user: after an incident)`;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError("set LATCH_PASSWORD or pipe the password on stdin");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

async function findUser(stores: Stores, who: string | undefined): Promise<UserRecord> {
  if (!who) throw new UsageError("name a user by username, email or id");
  const user = isUuid(who) ? await stores.users.findUserById(who) : await stores.users.findUserByLogin(loginKey(who) ?? "");
  if (user === null) throw new UsageError(`no user "${who}"`);
  return user;
}

/**
 * Waits until what the command revoked has reached every server's copies
 * (the tiered store mirrors to Redis and announces). If it could not, the
 * change is in the database and the store has left the flush mark that makes
 * every server drop its copies; the operator is told so in one line, exit 1.
 */
async function settled(stores: Stores, done: string): Promise<string> {
  try {
    await stores.settle?.();
  } catch (error) {
    if (isLatchError(error, "unavailable")) throw new UsageError(`${done} in the database; ${error.message}`);
    throw error;
  }
  return done;
}

/**
 * Runs an administration command against the configured stores and prints
 * one line of result. Returns the exit code: 0 done, 1 refused, 2 usage.
 */
export async function runAdminCommand(
  config: Config,
  args: string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { email: { type: "string" }, admin: { type: "boolean" } },
  });
  const [group, action, ...rest] = positionals;
  const known = [
    "users create",
    "users roles",
    "users revoke-sessions",
    "users reset-mfa",
    "users delete",
    "sessions purge",
    "sessions revoke-all",
  ];
  if (!known.includes(`${group} ${action}`)) {
    err(ADMIN_USAGE);
    return 2;
  }
  const runtime = systemRuntime();
  // Quiet stores: an outage is reported once, in the command's own one-line answer.
  const stores = await openStores(config, { logger: QUIET });
  try {
    switch (`${group} ${action}`) {
      case "users create": {
        const password = process.env.LATCH_PASSWORD ?? (await readStdin());
        const accounts = createAccounts({ users: stores.users, hasher: createPasswordHasher(), runtime });
        const user = await accounts.register({ username: rest[0], password, email: values.email, roles: values.admin ? ["admin"] : [] });
        out(`created ${user.username} (${user.id}) with roles ${user.roles.join(",")}`);
        return 0;
      }
      case "users roles": {
        const user = await findUser(stores, rest[0]);
        const roles = normaliseRoles(
          (rest[1] ?? "")
            .split(",")
            .map((r) => r.trim())
            .filter(Boolean),
        );
        await refuseRemovingLastAdmin(stores.users, user, roles);
        await stores.users.updateUserRoles(user.id, roles, runtime.clock.now());
        out(await settled(stores, `${user.username} now has roles ${roles.join(",")}`));
        return 0;
      }
      case "users revoke-sessions": {
        const user = await findUser(stores, rest[0]);
        const revoked = await stores.sessions.deleteUserSessions(user.id);
        out(await settled(stores, `revoked ${revoked} session(s) of ${user.username}`));
        return 0;
      }
      case "users reset-mfa": {
        // A lost device, from the operator's shell: as DELETE /admin/users/:id/mfa.
        const user = await findUser(stores, rest[0]);
        const removed = await stores.secondFactors.deleteSecondFactors(user.id);
        const revoked = await stores.sessions.deleteUserSessions(user.id);
        await stores.events.recordEvent({
          id: uuidv7(runtime.clock, runtime.random),
          userId: user.id,
          type: "mfa_reset",
          at: runtime.clock.now(),
          ipAddress: null,
          userAgent: null,
          detail: { by: "cli", revoked: String(revoked) },
        });
        out(
          removed
            ? `removed the second factors of ${user.username} and revoked ${revoked} session(s)`
            : `${user.username} had no second factor; revoked ${revoked} session(s)`,
        );
        return 0;
      }
      case "users delete": {
        const user = await findUser(stores, rest[0]);
        await stores.users.deleteUser(user.id);
        out(await settled(stores, `deleted ${user.username} and all their sessions`));
        return 0;
      }
      case "sessions revoke-all": {
        let total = 0;
        let after: string | undefined;
        for (;;) {
          const page = await stores.users.listUsers({ limit: 100, after });
          for (const user of page) total += await stores.sessions.deleteUserSessions(user.id);
          if (page.length < 100) break;
          after = page[page.length - 1]!.id;
        }
        out(await settled(stores, `revoked ${total} session(s) of every user`));
        return 0;
      }
      default: {
        let total = 0;
        for (let removed = -1; removed !== 0; total += removed)
          removed = await stores.sessions.deleteExpiredSessions(runtime.clock.now(), 1000);
        out(`purged ${total} expired session(s)`);
        return 0;
      }
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof LatchError && error.status < 500)) {
      err(`latch: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    await stores.close();
  }
}
