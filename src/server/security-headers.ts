/**
 * The headers every answer carries (plus HSTS in production). Exported for
 * the benchmark, whose ceiling sends the same ones beside the bare one.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  // Off, as current advice says (OWASP, MDN): the legacy XSS auditors could
  // be abused to blank out parts of a page, and CSP does the real work.
  "x-xss-protection": "0",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
});
