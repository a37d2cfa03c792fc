import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createTestServer, TEST_PASSWORD } from "../testing/test-server.js";
import type { TestServer } from "../testing/test-server.js";

/**
 * The server's own origin comes from PUBLIC_URL (and, outside production,
 * loopback origins on the port the connection reached), never from the Host
 * header: a DNS-rebinding page sends its own name as Host and as Origin.
 */

/** A raw HTTP request, so Host and Origin are sent exactly as given. */
function send(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("the server's own origin", () => {
  let t: TestServer;
  before(
    async () =>
      (t = await createTestServer({ env: { PUBLIC_URL: "https://auth.example.com", TRUSTED_ORIGINS: "https://app.example.com" } })),
  );
  after(() => t.close());

  const login = (username: string, headers: Record<string, string>) =>
    t.app.inject({ method: "POST", url: "/login", payload: { username, password: TEST_PASSWORD }, headers });

  it("refuses a state change whose Origin matches a forged Host (DNS rebinding)", async () => {
    const { username } = await t.register();
    for (const host of ["evil.example", "evil.example:80", "localhost:80"]) {
      const response = await login(username, { host, origin: `http://${host}`, "sec-fetch-site": "same-origin" });
      assert.equal(response.statusCode, 403, `Host ${host}: ${response.body}`);
      assert.equal(response.json().error.code, "csrf");
    }
  });

  it("accepts PUBLIC_URL's origin whatever the Host says, its default port spelled out or not", async () => {
    const { username } = await t.register();
    for (const origin of ["https://auth.example.com", "https://auth.example.com:443"]) {
      const response = await login(username, { host: "10.1.2.3:3000", origin, "sec-fetch-site": "same-origin" });
      assert.equal(response.statusCode, 200, `${origin}: ${response.body}`);
    }
  });

  it("answers /healthz and /readyz under any Host (probes use the pod's address)", async () => {
    for (const url of ["/healthz", "/readyz"]) {
      assert.equal((await t.app.inject({ url, headers: { host: "10.1.2.3:3000" } })).statusCode, 200, url);
    }
  });

  it("serves /metrics only when the Host is a loopback name, even to a loopback client", async () => {
    for (const host of ["localhost", "localhost:3000", "127.0.0.1:3000", "[::1]:3000"]) {
      assert.equal((await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1", headers: { host } })).statusCode, 200, host);
    }
    for (const host of ["evil.example", "evil.example:3000", "127.0.0.1.evil.example", "localhost.evil.example:3000"]) {
      const response = await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1", headers: { host } });
      assert.equal(response.statusCode, 403, host);
      assert.equal(response.json().error.code, "forbidden");
    }
  });
});

describe("loopback origins outside production", () => {
  let t: TestServer;
  let port: number;
  before(async () => {
    t = await createTestServer();
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    port = (t.app.server.address() as AddressInfo).port;
  });
  after(() => t.close());

  async function postLogin(headers: Record<string, string>): Promise<number> {
    const { username } = await t.register();
    const body = JSON.stringify({ username, password: TEST_PASSWORD });
    return (await send(port, "POST", "/login", { "content-type": "application/json", ...headers }, body)).status;
  }

  it("count as own on the port the connection reached, by any loopback name", async () => {
    for (const name of ["localhost", "127.0.0.1", "[::1]"]) {
      assert.equal(await postLogin({ host: `${name}:${port}`, origin: `http://${name}:${port}` }), 200, name);
    }
  });

  it("do not count on another port, and a rebinding name on this port does not count", async () => {
    assert.equal(await postLogin({ host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port + 1}` }), 403);
    assert.equal(await postLogin({ host: `evil.example:${port}`, origin: `http://evil.example:${port}` }), 403);
  });

  it("do not count in production, where only PUBLIC_URL's origin is own", async () => {
    const prod = await createTestServer({
      env: { NODE_ENV: "production", TRUSTED_ORIGINS: "https://app.example.com", PUBLIC_URL: "https://auth.example.com" },
    });
    try {
      await prod.app.listen({ port: 0, host: "127.0.0.1" });
      const prodPort = (prod.app.server.address() as AddressInfo).port;
      const { username } = await prod.register();
      const body = JSON.stringify({ username, password: TEST_PASSWORD });
      const loopback = await send(
        prodPort,
        "POST",
        "/login",
        { "content-type": "application/json", host: `127.0.0.1:${prodPort}`, origin: `http://127.0.0.1:${prodPort}` },
        body,
      );
      assert.equal(loopback.status, 403, loopback.body);
      const own = await send(
        prodPort,
        "POST",
        "/login",
        { "content-type": "application/json", host: `127.0.0.1:${prodPort}`, origin: "https://auth.example.com" },
        body,
      );
      assert.equal(own.status, 200, own.body);
    } finally {
      await prod.close();
    }
  });
});
