import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "./config.js";

describe("configuration", () => {
  it("reads the mail variables and refuses bad ones with one line naming the variable", () => {
    const config = loadConfig({
      PORT: "4000",
      SMTP_URL: "smtps://user:secret@mail.example.com:465",
      MAIL_FROM: "Acme <auth@acme.example>",
      MAIL_OUTBOX: "/var/mail/latch",
      PUBLIC_URL: "https://auth.acme.example/",
    });
    assert.deepEqual(config.mail, {
      smtpUrl: "smtps://user:secret@mail.example.com:465",
      from: "Acme <auth@acme.example>",
      outbox: "/var/mail/latch",
    });
    assert.equal(config.publicUrl, "https://auth.acme.example");
    assert.equal(loadConfig({ PORT: "4000" }).publicUrl, "http://localhost:4000");
    for (const [variable, value] of [
      ["SMTP_URL", "http://mail.example.com"],
      ["SMTP_URL", "smtp://"],
      ["MAIL_FROM", "not an address"],
      ["MAIL_FROM", "Evil <a@b.example>\r\nBcc: x@y.example"],
      ["PUBLIC_URL", "ftp://auth.example.com"],
      ["PUBLIC_URL", "https://auth.example.com/?q=1"],
    ] as const) {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (e) => e instanceof ConfigError && e.variable === variable && !e.message.includes("\n"),
        `${variable}=${value}`,
      );
    }
  });

  it("has the contract's defaults", () => {
    const config = loadConfig({});
    assert.equal(config.port, 3000);
    assert.equal(config.host, "127.0.0.1");
    assert.deepEqual(config.database, { kind: "sqlite", path: "./data/latch.db" });
    assert.equal(config.redisUrl, null);
    assert.equal(config.session.idleTimeoutMs, 1_800_000);
    assert.equal(config.session.absoluteTimeoutMs, 86_400_000);
    assert.deepEqual(config.trustedOrigins, []);
    assert.deepEqual(config.trustProxy, []);
    assert.equal(config.production, false);
    assert.equal(config.bodyLimitBytes, 16_384);
    assert.deepEqual(config.throttle, {
      accountFailures: 10,
      accountWindowMs: 900_000,
      addressFailures: 100,
      addressWindowMs: 900_000,
      registrations: 100,
      registrationWindowMs: 3_600_000,
      passwordResets: 100,
      passwordResetWindowMs: 3_600_000,
      resetMessagesPerAccount: 3,
    });
    assert.equal(config.publicUrl, "http://localhost:3000");
    assert.deepEqual(config.mail, { smtpUrl: null, from: "Latch <no-reply@localhost>", outbox: "./data/outbox" });
    assert.ok(config.tokenTtlSeconds <= 900);
  });

  it("reads each variable", () => {
    const config = loadConfig({
      PORT: "8080",
      HOST: "0.0.0.0",
      DATABASE_URL: "postgres://u@db/latch",
      REDIS_URL: "redis://cache:6379",
      SESSION_IDLE_TIMEOUT: "60",
      SESSION_ABSOLUTE_TIMEOUT: "120",
      TRUSTED_ORIGINS: "https://a.example, https://b.example:8443",
      ADMIN_USERNAME: "root",
      ADMIN_PASSWORD: "a long admin password",
      TRUST_PROXY: "10.0.0.0/8,127.0.0.1",
      NODE_ENV: "production",
    });
    assert.equal(config.port, 8080);
    assert.deepEqual(config.database, { kind: "postgres", url: "postgres://u@db/latch" });
    assert.equal(config.redisUrl, "redis://cache:6379");
    assert.equal(config.session.renewIntervalMs, 6000);
    assert.deepEqual(config.trustedOrigins, ["https://a.example", "https://b.example:8443"]);
    assert.deepEqual(config.admin, { username: "root", password: "a long admin password" });
    assert.deepEqual(config.trustProxy, ["10.0.0.0/8", "127.0.0.1"]);
    assert.equal(config.production, true);
  });

  const bad: Array<[Record<string, string>, string]> = [
    [{ PORT: "http" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ REDIS_URL: "localhost:6379" }, "REDIS_URL"],
    [{ SESSION_IDLE_TIMEOUT: "-5" }, "SESSION_IDLE_TIMEOUT"],
    [{ SESSION_IDLE_TIMEOUT: "600", SESSION_ABSOLUTE_TIMEOUT: "60" }, "SESSION_ABSOLUTE_TIMEOUT"],
    [{ TRUSTED_ORIGINS: "not a url" }, "TRUSTED_ORIGINS"],
    [{ TRUSTED_ORIGINS: "https://a.example/path" }, "TRUSTED_ORIGINS"],
    [{ ADMIN_USERNAME: "root" }, "ADMIN_PASSWORD"],
    [{ TRUST_PROXY: "everyone" }, "TRUST_PROXY"],
    [{ NODE_ENV: "production" }, "TRUSTED_ORIGINS"],
  ];
  for (const [env, variable] of bad) {
    it(`refuses ${JSON.stringify(env)} with one line naming ${variable}`, () => {
      assert.throws(
        () => loadConfig(env),
        (error) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.variable, variable);
          assert.ok(error.message.includes(variable));
          assert.ok(!error.message.includes("\n"));
          return true;
        },
      );
    });
  }
});

describe("PUBLIC_URL", () => {
  it("defaults to http://localhost:PORT and keeps a path without its trailing slash", () => {
    assert.equal(loadConfig({}).publicUrl, "http://localhost:3000");
    assert.equal(loadConfig({ PORT: "8080" }).publicUrl, "http://localhost:8080");
    assert.equal(loadConfig({ PUBLIC_URL: "https://auth.example.com/" }).publicUrl, "https://auth.example.com");
    assert.equal(loadConfig({ PUBLIC_URL: "https://example.com/auth/" }).publicUrl, "https://example.com/auth");
  });

  it("refuses anything but an http(s) URL, in one line naming the variable", () => {
    for (const value of [
      "auth.example.com",
      "ftp://auth.example.com",
      "https://auth.example.com/?x=1",
      "https://auth.example.com/#a",
      "https://u:p@auth.example.com",
    ]) {
      assert.throws(
        () => loadConfig({ PUBLIC_URL: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, value);
          assert.equal(error.variable, "PUBLIC_URL");
          assert.match(error.message, /^Invalid configuration: PUBLIC_URL [^\n]+$/);
          return true;
        },
      );
    }
  });
});
