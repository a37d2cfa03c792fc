import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { FastifyInstance } from "fastify";

/**
 * The pages' one script, one stylesheet and icon, real files beside this module
 * (src/web/assets/ in the source, dist/web/assets/ once built: scripts/build.mjs
 * copies them), read once at start. The pages carry no inline script or
 * style, which is what lets their CSP be `'self'` only.
 *
 * latch.js turns every `<form data-action="…">` into a call to the JSON
 * API: fetch with the session cookie and the CSRF token from
 * `<meta name="csrf-token">`, then a navigation on success, or the API's
 * `error.message` in the form's `role="alert"` element on failure.
 */
function asset(name: string): string {
  return readFileSync(new URL(`./assets/${name}`, import.meta.url), "utf8");
}

export const LATCH_JS: string = asset("latch.js");
export const LATCH_CSS: string = asset("latch.css");

/** A padlock, linked as the icon so browsers do not ask for a missing /favicon.ico. */
export const LATCH_ICON: string = asset("latch.svg");

function version(text: string): string {
  return createHash("sha256").update(text).digest("base64url").slice(0, 12);
}

/**
 * Asset URLs with a content hash, so the year-long cache below can never
 * serve a stale script after an upgrade: a new build links a new URL.
 */
/**
 * @simplewebauthn/browser's UMD bundle, read from the installed package at
 * start-up (its package exports do not name the bundle, so it is found next
 * to the package's entry point). It defines `window.SimpleWebAuthnBrowser`
 * for the page script; served from this origin, so the pages' CSP stays
 * `script-src 'self'`.
 */
export const WEBAUTHN_JS: string = readFileSync(
  join(dirname(createRequire(import.meta.url).resolve("@simplewebauthn/browser")), "..", "dist", "bundle", "index.umd.min.js"),
  "utf8",
);

export const assetUrls: { readonly script: string; readonly stylesheet: string; readonly icon: string; readonly webauthn: string } = {
  webauthn: `/assets/simplewebauthn-browser.js?v=${version(WEBAUTHN_JS)}`,
  script: `/assets/latch.js?v=${version(LATCH_JS)}`,
  stylesheet: `/assets/latch.css?v=${version(LATCH_CSS)}`,
  icon: `/assets/latch.svg?v=${version(LATCH_ICON)}`,
};

const LONG_CACHE = "public, max-age=31536000, immutable";

/**
 * GET /assets/latch.js, /assets/latch.css, /assets/latch.svg and /assets/simplewebauthn-browser.js.
 *
 * @example
 * assetRoutes(app);
 */
export function assetRoutes(app: FastifyInstance): void {
  app.get("/assets/latch.js", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("text/javascript; charset=utf-8").send(LATCH_JS);
  });
  app.get("/assets/simplewebauthn-browser.js", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("text/javascript; charset=utf-8").send(WEBAUTHN_JS);
  });
  app.get("/assets/latch.css", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("text/css; charset=utf-8").send(LATCH_CSS);
  });
  app.get("/assets/latch.svg", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("image/svg+xml").send(LATCH_ICON);
  });
}
