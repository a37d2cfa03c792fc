import { Socket } from "node:net";

/**
 * Where the tests find PostgreSQL and Redis, and what to do when they are not
 * there: under CI=true a missing service fails the run; on a laptop without
 * it the tests that need it skip with the reason printed.
 */
export const POSTGRES_URL = process.env.LATCH_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.LATCH_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

function reachable(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(Number(port || defaultPort), hostname.replace(/^\[|\]$/g, ""), () => done(true));
  });
}

/**
 * Resolves to `false` when the service answers (run the tests), or to a skip
 * reason. Under CI it throws instead of skipping.
 *
 * @example
 * const skip = await serviceSkip("postgres");
 * describe("postgres", { skip }, () => { ... });
 */
export async function serviceSkip(service: "postgres" | "redis"): Promise<string | false> {
  const url = service === "postgres" ? POSTGRES_URL : REDIS_URL;
  if (await reachable(url, service === "postgres" ? 5432 : 6379)) return false;
  const reason = `${service} is not reachable at ${new URL(url).host}`;
  if (process.env.CI === "true" || process.env.CI === "1") {
    throw new Error(`${reason}, and CI=true: tests that need ${service} must run in CI.`);
  }
  console.log(`# skipping ${service} tests: ${reason}`);
  return reason;
}
