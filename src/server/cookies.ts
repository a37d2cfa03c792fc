/**
 * The session cookie. Hand-written rather than @fastify/cookie: Latch reads
 * exactly one cookie on the hot path and never signs it (the value is already
 * an unguessable id plus a secret whose hash is checked), so a full parser and
 * signer would be work done on every request for nothing.
 */
export interface CookieOptions {
  production: boolean;
}

export function sessionCookieName(options: CookieOptions): string {
  // __Host- binds the cookie to this exact host, Secure and Path=/.
  return options.production ? "__Host-sid" : "sid";
}

/**
 * The value of cookie `name` in a Cookie header, or undefined. Reads only
 * what it needs: no object of every cookie is built.
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

function attributes(options: CookieOptions): string {
  return `Path=/; HttpOnly; SameSite=Lax${options.production ? "; Secure" : ""}`;
}

/** A Set-Cookie value that expires with the session (never later). */
export function sessionCookie(name: string, token: string, expiresAt: number, now: number, options: CookieOptions): string {
  const maxAge = Math.max(0, Math.floor((expiresAt - now) / 1000));
  return `${name}=${token}; Max-Age=${maxAge}; Expires=${new Date(now + maxAge * 1000).toUTCString()}; ${attributes(options)}`;
}

/** A Set-Cookie value that removes the session cookie. */
export function clearedSessionCookie(name: string, options: CookieOptions): string {
  return `${name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; ${attributes(options)}`;
}
