import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import express from "express";
import type { ErrorRequestHandler } from "express";
import { expressjwt } from "express-jwt";
import type { Request as JwtRequest } from "express-jwt";
import { decodeProtectedHeader } from "jose";
import jwt from "jsonwebtoken";
import jwksRsa from "jwks-rsa";
import passport from "passport";
import { ExtractJwt, Strategy as JwtStrategy } from "passport-jwt";
import { Client, startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * The JWT libraries resource servers use, none of them written here, each
 * verifying a token from a real, listening Latch through its JWKS: the
 * default TOKEN_ALG (ES256), RS256, and EdDSA where the library can. Where it
 * cannot (jsonwebtoken and everything built on it), a test shows the refusal,
 * so the README's table stays true when a library changes.
 */

// Debian's python3-jwt under Debian's own interpreter: `python3` on PATH may
// be another one without the module. .ci/run installs it when missing.
const PYTHON = "/usr/bin/python3";
const pyjwtProbe = spawnSync(PYTHON, ["-c", "import jwt, cryptography; print(jwt.__version__)"], { encoding: "utf8" });
const pyjwtMissing = pyjwtProbe.status === 0 ? false : `${PYTHON} cannot import jwt: apt-get install -y python3-jwt`;
if (pyjwtMissing) {
  if (process.env.CI === "true" || process.env.CI === "1")
    throw new Error(`${pyjwtMissing}, and CI=true: the PyJWT interop test must run in CI.`);
  process.stdout.write(`# skipping the PyJWT tests: ${pyjwtMissing}\n`);
}

const PASSWORD = "a long enough password";
const ISSUER = "latch";
type Alg = "ES256" | "RS256" | "EdDSA";

interface Running {
  latch: LatchProcess;
  jwksUri: string;
  token: string;
  sub: string;
}

const dir = mkdtempSync(join(tmpdir(), "latch-interop-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function startWith(alg: Alg | null): Promise<Running> {
  const env: Record<string, string> = { DATABASE_URL: `sqlite:${join(dir, `${alg ?? "default"}.db`)}` };
  if (alg !== null) env.TOKEN_ALG = alg;
  const latch = await startLatch(env);
  const client = new Client(latch.url);
  const registered = await client.request("POST", "/register", {
    username: `interop.${(alg ?? "default").toLowerCase()}`,
    password: PASSWORD,
  });
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  // Credentials, no cookie: what a script or a mobile client does.
  const issued = await new Client(latch.url).request("POST", "/token", {
    username: `interop.${(alg ?? "default").toLowerCase()}`,
    password: PASSWORD,
  });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  return {
    latch,
    jwksUri: `${latch.url}/.well-known/jwks.json`,
    token: issued.body.token as string,
    sub: registered.body.user.id as string,
  };
}

/** An Express app on a free loopback port; returns its URL and a stop function. */
async function listen(app: express.Express): Promise<{ url: string; close(): Promise<void> }> {
  const server = await new Promise<import("node:http").Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const jsonErrors: ErrorRequestHandler = (error: { status?: number; message: string }, _req, res, _next) => {
  res.status(error.status ?? 500).json({ error: error.message });
};

/** jsonwebtoken's verify with the key jwks-rsa's getSigningKey fetched for the token's kid. */
async function verifyWithJsonwebtoken(running: Running, alg: string): Promise<jwt.JwtPayload> {
  const client = jwksRsa({ jwksUri: running.jwksUri, cache: false });
  const key = await client.getSigningKey(decodeProtectedHeader(running.token).kid);
  return jwt.verify(running.token, key.getPublicKey(), { algorithms: [alg as jwt.Algorithm], issuer: ISSUER }) as jwt.JwtPayload;
}

/** GET /dashboard on an Express app guarded by express-jwt with jwks-rsa's expressJwtSecret. */
async function expressJwtDashboard(running: Running, alg: string): Promise<{ status: number; body: any }> {
  const app = express();
  app.get(
    "/dashboard",
    expressjwt({
      secret: jwksRsa.expressJwtSecret({ jwksUri: running.jwksUri, cache: true, rateLimit: true }) as never,
      algorithms: [alg as jwt.Algorithm],
      issuer: ISSUER,
    }),
    (req: JwtRequest, res) => {
      res.json({ sub: req.auth?.sub, roles: req.auth?.roles });
    },
  );
  app.use(jsonErrors);
  const server = await listen(app);
  try {
    const response = await fetch(`${server.url}/dashboard`, { headers: { authorization: `Bearer ${running.token}` } });
    return { status: response.status, body: await response.json() };
  } finally {
    await server.close();
  }
}

/** GET /dashboard on an Express app guarded by passport-jwt with jwks-rsa's passportJwtSecret. */
async function passportDashboard(running: Running, alg: string): Promise<{ status: number; body: any }> {
  const authenticator = new passport.Passport();
  authenticator.use(
    new JwtStrategy(
      {
        jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
        secretOrKeyProvider: jwksRsa.passportJwtSecret({ jwksUri: running.jwksUri, cache: true }),
        algorithms: [alg as jwt.Algorithm],
        issuer: ISSUER,
      },
      (payload: { sub: string; roles: string[] }, done: (error: unknown, user?: unknown) => void) =>
        done(null, { id: payload.sub, roles: payload.roles }),
    ),
  );
  const app = express();
  app.use(authenticator.initialize());
  app.get("/dashboard", authenticator.authenticate("jwt", { session: false }), (req, res) => {
    res.json({ sub: (req.user as { id: string }).id });
  });
  app.use(jsonErrors);
  const server = await listen(app);
  try {
    const response = await fetch(`${server.url}/dashboard`, { headers: { authorization: `Bearer ${running.token}` } });
    const text = await response.text();
    return { status: response.status, body: text.startsWith("{") ? JSON.parse(text) : text };
  } finally {
    await server.close();
  }
}

/** PyJWT's PyJWKClient fetches the key for the token's kid; jwt.decode checks signature, alg, iss and exp. */
function pyjwtVerify(running: Running, alg: string): { status: number | null; stdout: string; stderr: string } {
  const script = `
import json, sys, jwt
uri, token, alg, issuer = sys.argv[1:5]
key = jwt.PyJWKClient(uri).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=[alg], issuer=issuer, options={"require": ["exp", "iat", "iss", "sub"]})
print(json.dumps(claims))
`;
  const result = spawnSync(PYTHON, ["-c", script, running.jwksUri, running.token, alg, ISSUER], { encoding: "utf8", timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

for (const [alg, label] of [
  [null, "the default configuration (ES256)"],
  ["RS256", "TOKEN_ALG=RS256"],
  ["EdDSA", "TOKEN_ALG=EdDSA"],
] as const) {
  const signed: Alg = alg ?? "ES256";
  const supportedByJsonwebtoken = signed !== "EdDSA";

  describe(`a token from a running Latch with ${label}`, () => {
    let running: Running;
    before(async () => (running = await startWith(alg)));
    after(() => running?.latch.stop());

    it(`is signed ${signed} with a kid that the JWKS publishes with alg and use "sig"`, async () => {
      const header = decodeProtectedHeader(running.token);
      assert.equal(header.alg, signed);
      const { keys } = (await (await fetch(running.jwksUri)).json()) as { keys: Array<Record<string, unknown>> };
      const key = keys.find((k) => k.kid === header.kid);
      assert.ok(key, "published");
      assert.equal(key.alg, signed);
      assert.equal(key.use, "sig");
    });

    if (supportedByJsonwebtoken) {
      it("verifies with jsonwebtoken and jwks-rsa's getSigningKey", async () => {
        const claims = await verifyWithJsonwebtoken(running, signed);
        assert.equal(claims.sub, running.sub);
        assert.equal(claims.iss, ISSUER);
        await assert.rejects(
          verifyWithJsonwebtoken({ ...running, token: running.token.slice(0, -4) + "AAAA" }, signed),
          /invalid signature/,
        );
      });

      it("is accepted by an Express app guarded by express-jwt with jwks-rsa", async () => {
        const response = await expressJwtDashboard(running, signed);
        assert.equal(response.status, 200, JSON.stringify(response.body));
        assert.equal(response.body.sub, running.sub);
        assert.deepEqual(response.body.roles, ["user"]);
        const forged = await expressJwtDashboard({ ...running, token: running.token.slice(0, -4) + "AAAA" }, signed);
        assert.equal(forged.status, 401);
      });

      it("is accepted by passport-jwt with jwks-rsa's passportJwtSecret", async () => {
        const response = await passportDashboard(running, signed);
        assert.equal(response.status, 200, JSON.stringify(response.body));
        assert.equal(response.body.sub, running.sub);
        assert.equal((await passportDashboard({ ...running, token: running.token.slice(0, -4) + "AAAA" }, signed)).status, 401);
      });
    } else {
      // The fact the README's table records: jsonwebtoken 9 has no EdDSA, and
      // express-jwt and passport-jwt verify through it.
      it("cannot be verified by jsonwebtoken (no EdDSA), even though jwks-rsa fetches the key", async () => {
        const client = jwksRsa({ jwksUri: running.jwksUri, cache: false });
        const key = await client.getSigningKey(decodeProtectedHeader(running.token).kid);
        assert.match(key.getPublicKey(), /BEGIN PUBLIC KEY/);
        assert.throws(() => jwt.verify(running.token, key.getPublicKey(), { algorithms: ["EdDSA" as jwt.Algorithm], issuer: ISSUER }));
        assert.throws(() => jwt.verify(running.token, key.getPublicKey(), { issuer: ISSUER }));
      });

      it("is refused by express-jwt and passport-jwt, which verify through jsonwebtoken", async () => {
        const viaExpressJwt = await expressJwtDashboard(running, "EdDSA");
        assert.equal(viaExpressJwt.status, 401);
        // jsonwebtoken's own words: it does not know Ed25519 keys.
        assert.match(String(viaExpressJwt.body.error), /Unknown key type "ed25519"|invalid algorithm/);
        const viaPassport = await passportDashboard(running, "EdDSA");
        assert.equal(viaPassport.status, 401);
        // And not for want of a key: with ES256 the same setup accepts (see the other describe blocks).
      });
    }

    it("verifies with PyJWT's PyJWKClient (Debian's python3-jwt)", { skip: pyjwtMissing }, () => {
      const result = pyjwtVerify(running, signed);
      assert.equal(result.status, 0, result.stderr);
      const claims = JSON.parse(result.stdout) as { sub: string; iss: string; roles: string[] };
      assert.equal(claims.sub, running.sub);
      assert.equal(claims.iss, ISSUER);
      const forged = pyjwtVerify({ ...running, token: running.token.slice(0, -4) + "AAAA" }, signed);
      assert.notEqual(forged.status, 0);
      assert.match(forged.stderr, /InvalidSignatureError|Signature verification failed/);
    });
  });
}

describe("a restart of Latch with TOKEN_ALG changed", () => {
  it("keeps an EdDSA token issued before the restart (TOKEN_ALG then unset) valid, and publishes both keys", async () => {
    const env = { DATABASE_URL: `sqlite:${join(dir, "switch.db")}` };
    let latch = await startLatch({ ...env, TOKEN_ALG: "EdDSA" });
    try {
      const client = new Client(latch.url);
      assert.equal((await client.request("POST", "/register", { username: "switch.user", password: PASSWORD })).status, 201);
      const before = await client.request("POST", "/token");
      const old = before.body.token as string;
      assert.equal(decodeProtectedHeader(old).alg, "EdDSA");
      assert.equal(await latch.stop("SIGTERM"), 0);

      latch = await startLatch(env, { port: latch.port });
      // The switch happens at start: before any token is asked for, the JWKS already has the new key beside the old one.
      const atStart = (await (await fetch(`${latch.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ alg: string }> };
      assert.deepEqual(atStart.keys.map((k) => k.alg).sort(), ["ES256", "EdDSA"]);
      const me = await fetch(`${latch.url}/me`, { headers: { authorization: `Bearer ${old}` } });
      assert.equal(me.status, 200, await me.clone().text());
      assert.equal(((await me.json()) as { user: { username: string } }).user.username, "switch.user");

      const fresh = (await client.request("POST", "/token")).body.token as string;
      assert.equal(decodeProtectedHeader(fresh).alg, "ES256", "the default signs from this start");
      const { keys } = (await (await fetch(`${latch.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<{ kid: string; alg: string; use: string }>;
      };
      assert.deepEqual(
        keys.map((k) => `${k.kid}:${k.alg}:${k.use}`).sort(),
        [`${decodeProtectedHeader(old).kid}:EdDSA:sig`, `${decodeProtectedHeader(fresh).kid}:ES256:sig`].sort(),
      );
      assert.equal(
        (await fetch(`${latch.url}/me`, { headers: { authorization: `Bearer ${old}` } })).status,
        200,
        "still, after the new key signed",
      );
      assert.equal((await fetch(`${latch.url}/me`, { headers: { authorization: `Bearer ${fresh}` } })).status, 200);
    } finally {
      await latch.stop("SIGKILL");
    }
  });

  it("refuses an unknown TOKEN_ALG at start with one line naming it", async () => {
    const { runLatch } = await import("./support/latch-process.js");
    const child = runLatch(["serve"], { TOKEN_ALG: "HS256", DATABASE_URL: `sqlite:${join(dir, "bad.db")}` });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 2);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(stderr, /TOKEN_ALG must be one of ES256, RS256, EdDSA/);
  });
});
