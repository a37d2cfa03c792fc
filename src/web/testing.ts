import assert from "node:assert/strict";
import type { LightMyRequestResponse } from "fastify";
import { PAGE_CSP } from "./pages/layout.js";

/**
 * Checks every page response shares: HTML in UTF-8, the pages' CSP, never
 * cached, and nothing inline that the CSP would have to allow.
 */
export function assertPage(response: LightMyRequestResponse, status = 200): void {
  assert.equal(response.statusCode, status, response.body);
  assert.equal(response.headers["content-type"], "text/html; charset=utf-8");
  assert.equal(response.headers["content-security-policy"], PAGE_CSP);
  assert.equal(response.headers["cache-control"], "no-store");
  assert.equal(response.headers["x-frame-options"], "DENY");
  assertNoInlineCode(response.body);
}

/**
 * No inline script, no event-handler attribute, no style attribute or
 * element, no `javascript:` link. Attribute values are blanked before the
 * checks, as a browser would read them: text like ` onclick=` inside an
 * escaped, quoted value is data, not an attribute.
 */
export function assertNoInlineCode(body: string): void {
  assert.doesNotMatch(body, /<script\b[^>]*>[^<]+<\/script>/i, "no inline script body");
  assert.doesNotMatch(body, /<style\b/i, "no style element");
  for (const [tag] of body.matchAll(/<[a-z][^>]*>/gi)) {
    const names = tag.replace(/"[^"]*"/g, '""');
    assert.doesNotMatch(names, /['`]/, `attributes are double-quoted: ${tag}`);
    assert.doesNotMatch(names, /\son[a-z]+\s*=/i, `no event-handler attribute: ${tag}`);
    assert.doesNotMatch(names, /\sstyle\s*=/i, `no style attribute: ${tag}`);
    assert.doesNotMatch(tag, /\s(?:href|src|action)="\s*javascript:/i, `no javascript: URL: ${tag}`);
    if (/^<script\b/i.test(tag))
      assert.match(tag, /\ssrc="\/assets\/(?:latch|simplewebauthn-browser)\.js\?v=[\w-]+"/, "every script is one of the served assets");
  }
}

/** Where a 302 goes. */
export function assertRedirect(response: LightMyRequestResponse, location: string): void {
  assert.equal(response.statusCode, 302, response.body);
  assert.equal(response.headers.location, location);
}
