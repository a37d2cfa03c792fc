import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Script } from "node:vm";
import { createTestServer } from "../testing/test-server.js";
import type { TestServer } from "../testing/test-server.js";
import { LATCH_CSS, LATCH_JS, assetUrls } from "./assets.js";

describe("the page assets", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("serves /assets/latch.js as JavaScript with a long cache", async () => {
    const response = await t.app.inject({ url: "/assets/latch.js" });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers["content-type"]), /^text\/javascript\b/);
    assert.equal(response.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(response.headers["x-content-type-options"], "nosniff");
    assert.equal(response.body, LATCH_JS);
  });

  it("serves /assets/latch.css as CSS with a long cache", async () => {
    const response = await t.app.inject({ url: "/assets/latch.css" });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers["content-type"]), /^text\/css\b/);
    assert.equal(response.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(response.body, LATCH_CSS);
  });

  it("serves /assets/latch.svg, the icon, as SVG with a long cache", async () => {
    const response = await t.app.inject({ url: "/assets/latch.svg" });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["content-type"], "image/svg+xml");
    assert.equal(response.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.match(response.body, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  });

  it("serves the versioned URLs the pages link, so a new build is never hidden by the cache", async () => {
    const page = (await t.app.inject({ url: "/account/signin" })).body;
    for (const url of [assetUrls.script, assetUrls.stylesheet, assetUrls.icon]) {
      assert.ok(page.includes(`"${url}"`), url);
      assert.match(url, /\?v=[\w-]{12}$/);
      assert.equal((await t.app.inject({ url })).statusCode, 200, url);
    }
  });

  it("ships a script that parses, and that calls the API same-origin with JSON and the CSRF header", () => {
    assert.doesNotThrow(() => new Script(LATCH_JS, { filename: "latch.js" }));
    assert.match(LATCH_JS, /credentials: "same-origin"/);
    assert.match(LATCH_JS, /"Content-Type": "application\/json"/);
    assert.match(LATCH_JS, /headers\["X-CSRF-Token"\] = csrfMeta\.content/);
    assert.match(LATCH_JS, /meta\[name="csrf-token"\]/);
    // Messages reach the page as text, never as markup.
    assert.doesNotMatch(LATCH_JS, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
  });

  it("has a focus style and hides [hidden] alerts even where a class sets display", () => {
    assert.match(LATCH_CSS, /:focus-visible \{ outline: 3px solid/);
    assert.match(LATCH_CSS, /\[hidden\] \{ display: none !important; \}/);
  });
});
