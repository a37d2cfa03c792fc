/**
 * The password-hashing worker, run by the pool in src/core/passwords.ts on
 * threads of their own with a lowered scheduling priority. The work is
 * synchronous here: the thread exists to do it.
 */
import { hashSync, verifySync } from "@node-rs/argon2";
import bcrypt from "bcryptjs";

export type HashTask =
  | { op: "hash"; password: string; options: { algorithm: 2; memoryCost: number; timeCost: number; parallelism: number } }
  | { op: "verify"; storedHash: string; password: string }
  | { op: "bcrypt-verify"; storedHash: string; password: string };

export default function run(task: HashTask): string | boolean {
  switch (task.op) {
    case "hash":
      return hashSync(task.password, task.options);
    case "verify":
      try {
        return verifySync(task.storedHash, task.password);
      } catch {
        return false;
      }
    case "bcrypt-verify":
      try {
        return bcrypt.compareSync(task.password, task.storedHash);
      } catch {
        return false;
      }
  }
}
