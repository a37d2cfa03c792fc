/**
 * The session cookie: its name, the one parser that reads it and the one
 * place its attributes are written. The server, its fast path and the
 * resource-server middleware all read and write it through this file.
 *
 * Hand-written rather than @fastify/cookie: Latch reads exactly one cookie on
 * the hot path and never signs it (the value is already an unguessable id
 * plus a secret whose hash is checked), so a full parser and signer would be
 * work done on every request for nothing.
 */

/** The name Latch gives its session cookie. */
export function sessionCookieName(options: { production: boolean }): string {
  // __Host- binds the cookie to this exact host, Secure and Path=/: a sibling
  // subdomain cannot set or overwrite it (see sessionCookie's checks).
  return options.production ? "__Host-sid" : "sid";
}

/**
 * The value of cookie `name` in a Cookie header, or undefined. Reads only
 * what it needs: no object of every cookie is built. The name must start a
 * pair and be followed by `=` at once (RFC 6265 §4.2.1 has no white space
 * there); the value is trimmed and unquoted.
 *
 * @example
 * readCookie("a=1; sid=abc.def", "sid"); // "abc.def"
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let start = 0;
  while (start < header.length) {
    while (header.charCodeAt(start) === 32) start += 1;
    const end = header.indexOf(";", start);
    const stop = end === -1 ? header.length : end;
    if (header.startsWith(name, start) && header.charCodeAt(start + name.length) === 61 /* = */) {
      let value = header.slice(start + name.length + 1, stop).trim();
      if (value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34) value = value.slice(1, -1);
      return value;
    }
    start = stop + 1;
  }
  return undefined;
}

export interface CookieOptions {
  /** Send `Secure` (production, HTTPS only). */
  secure: boolean;
}

/** True for a name whose prefix makes browsers insist on Secure (RFC 6265bis §4.1.3). */
export function hasSecurePrefix(name: string): boolean {
  return name.startsWith("__Host-") || name.startsWith("__Secure-");
}

/**
 * The attributes every session cookie carries. `__Host-` also demands
 * `Path=/` and no `Domain`, which these always are; `Secure` is checked
 * where the cookie is written, since a browser silently drops a prefixed
 * cookie without it (the user would seem never to sign in).
 */
function attributes(name: string, options: CookieOptions): string {
  if (!options.secure && hasSecurePrefix(name)) {
    throw new TypeError(`latch: the ${name} cookie must be Secure (a browser refuses it otherwise)`);
  }
  return options.secure ? "Path=/; HttpOnly; SameSite=Lax; Secure" : "Path=/; HttpOnly; SameSite=Lax";
}

/**
 * A Set-Cookie value for a session token that expires with the session
 * (never later).
 *
 * @example
 * reply.header("Set-Cookie", sessionCookie("sid", token, session.idleExpiresAt, now, { secure: false }));
 */
export function sessionCookie(name: string, token: string, expiresAt: number, now: number, options: CookieOptions): string {
  const maxAge = Math.max(0, Math.floor((expiresAt - now) / 1000));
  return `${name}=${token}; Max-Age=${maxAge}; Expires=${new Date(now + maxAge * 1000).toUTCString()}; ${attributes(name, options)}`;
}

/**
 * A Set-Cookie value that removes the session cookie.
 *
 * @example
 * reply.header("Set-Cookie", clearedSessionCookie("sid", { secure: false }));
 */
export function clearedSessionCookie(name: string, options: CookieOptions): string {
  return `${name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; ${attributes(name, options)}`;
}
