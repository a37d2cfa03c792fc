import { LatchError } from "./errors.js";
import { checkNewPassword, loginKey, normaliseEmail, normalisePassword, normaliseUsername } from "./identity.js";
import { uuidv7 } from "./ids.js";
import { toBase64Url } from "./encoding.js";
import type { PasswordHasher } from "./passwords.js";
import type { Runtime } from "./runtime.js";
import type { User, UserRecord, UserStore } from "./store.js";

export interface RegisterInput {
  username: unknown;
  password: unknown;
  email?: unknown;
  roles?: string[];
}

export interface Accounts {
  /** Creates a user. Throws `invalid_input` for a bad field, `conflict` when the username or email is taken. */
  register(input: RegisterInput): Promise<UserRecord>;
  /** The user a sign-in names by username or email, or null. */
  findByLogin(login: unknown): Promise<UserRecord | null>;
  /**
   * True when `password` is `user`'s. For a null user (an unknown login) it
   * runs one full verification against a dummy hash and returns false, so
   * the time taken does not tell whether an account exists. A legacy or
   * outdated hash is replaced by a current argon2id hash on success.
   */
  checkCredentials(user: UserRecord | null, password: unknown): Promise<boolean>;
  /**
   * Checks a new password against the policy (`invalid_input` naming
   * `field`) and returns its hash, writing nothing: for a reset, where the
   * store swaps the hash in the same transaction that spends the token.
   */
  hashNewPassword(user: UserRecord, newPassword: unknown, field?: string): Promise<string>;
  /** Sets a new password after checking it against the policy. */
  setPassword(user: UserRecord, newPassword: unknown, field?: string): Promise<void>;
}

export const ROLE_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;

/** The user as responses show it: never the hash or the look-up keys. */
export function publicUser(user: User): User {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    emailVerified: user.emailVerified,
    roles: user.roles,
    mfa: user.mfa,
    createdAt: user.createdAt,
  };
}

/** Validates a roles list from input; "user" is always included. */
export function normaliseRoles(value: unknown): string[] {
  if (!Array.isArray(value) || value.length > 16 || !value.every((r) => typeof r === "string" && ROLE_PATTERN.test(r))) {
    throw new LatchError("invalid_input", 'roles must be a list of at most 16 names like "admin" (a-z, 0-9, _ and -).', {
      details: { field: "roles" },
    });
  }
  return [...new Set(["user", ...(value as string[])])];
}

/**
 * Refuses with 409 `conflict` a change of `target`'s roles to `roles` that
 * would leave no user with the `admin` role: nobody could then administer
 * Latch except through the CLI. Reads users a page at a time and stops at
 * the first other admin. Check-then-write: two admins demoting each other
 * at the same instant can both pass; the CLI (`latch users roles`) remains
 * the way back in.
 *
 * @example
 * await refuseRemovingLastAdmin(stores.users, target, ["user"]);
 */
export async function refuseRemovingLastAdmin(users: UserStore, target: UserRecord, roles: string[]): Promise<void> {
  if (!target.roles.includes("admin") || roles.includes("admin")) return;
  let after: string | undefined;
  for (;;) {
    const page = await users.listUsers({ limit: 100, after });
    if (page.some((user) => user.id !== target.id && user.roles.includes("admin"))) return;
    if (page.length < 100) break;
    after = page[page.length - 1]!.id;
  }
  throw new LatchError("conflict", `${target.username} is the last admin: make another user an admin first.`);
}

export function createAccounts(options: { users: UserStore; hasher: PasswordHasher; runtime: Runtime }): Accounts {
  const { users, hasher, runtime } = options;
  let dummyHash: Promise<string> | undefined;

  function dummy(): Promise<string> {
    if (dummyHash === undefined) {
      const bytes = new Uint8Array(24);
      runtime.random(bytes);
      dummyHash = hasher.hash(toBase64Url(bytes));
    }
    return dummyHash;
  }

  async function upgradeHash(user: UserRecord, password: string): Promise<void> {
    if (!hasher.needsRehash(user.passwordHash)) return;
    const passwordHash = await hasher.hash(password);
    await users.updateUserPassword(user.id, passwordHash, runtime.clock.now());
    user.passwordHash = passwordHash;
  }

  return {
    async register(input) {
      const { username, key } = normaliseUsername(input.username);
      const email = input.email === undefined || input.email === null ? null : normaliseEmail(input.email);
      const password = checkNewPassword(input.password, key);
      if (email !== null && email.key === key) {
        throw new LatchError("invalid_input", "email must differ from the username.", { details: { field: "email" } });
      }
      // Check for a taken name before spending a hash on it; the store's
      // unique constraint is still what guarantees uniqueness under races.
      if ((await users.findUserByLogin(key)) !== null || (email !== null && (await users.findUserByLogin(email.key)) !== null)) {
        throw new LatchError("conflict", "That username or email is already registered.");
      }
      const now = runtime.clock.now();
      const user: UserRecord = {
        id: uuidv7(runtime.clock, runtime.random),
        username,
        usernameKey: key,
        email: email?.username ?? null,
        emailKey: email?.key ?? null,
        emailVerified: false,
        passwordHash: await hasher.hash(password),
        roles: [...new Set(["user", ...(input.roles ?? [])])],
        mfa: false,
        createdAt: now,
        updatedAt: now,
      };
      await users.createUser(user);
      return user;
    },

    async findByLogin(login) {
      const key = loginKey(login);
      return key === null ? null : users.findUserByLogin(key);
    },

    async checkCredentials(user, password) {
      const normalised = normalisePassword(password);
      if (user === null || normalised === null) {
        await hasher.verify(await dummy(), normalised ?? "");
        return false;
      }
      if (!(await hasher.verify(user.passwordHash, normalised))) return false;
      await upgradeHash(user, normalised);
      return true;
    },

    async hashNewPassword(user, newPassword, field = "newPassword") {
      return hasher.hash(checkNewPassword(newPassword, user.usernameKey, field));
    },

    async setPassword(user, newPassword, field = "newPassword") {
      const password = checkNewPassword(newPassword, user.usernameKey, field);
      const passwordHash = await hasher.hash(password);
      if (!(await users.updateUserPassword(user.id, passwordHash, runtime.clock.now()))) {
        throw new LatchError("not_found", "User not found.");
      }
      user.passwordHash = passwordHash;
    },
  };
}

/**
 * Creates the bootstrap administrator when no user has that username yet.
 * Returns the user when it was created, null when the username exists.
 * An existing user is left alone: start-up never resets a password.
 */
export async function ensureAdmin(
  accounts: Accounts,
  users: UserStore,
  admin: { username: string; password: string },
): Promise<UserRecord | null> {
  const { key } = normaliseUsername(admin.username);
  if ((await users.findUserByLogin(key)) !== null) return null;
  try {
    return await accounts.register({ username: admin.username, password: admin.password, roles: ["admin"] });
  } catch (error) {
    // Another process started at the same moment and created it first.
    if (error instanceof LatchError && error.code === "conflict") return null;
    throw error;
  }
}
