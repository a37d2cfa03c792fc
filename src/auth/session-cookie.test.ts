import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clearedSessionCookie, readCookie, sessionCookie } from "./session-cookie.js";

describe("cookies", () => {
  it("reads one cookie among many, quoted or not", () => {
    assert.equal(readCookie("a=1; sid=abc.def; b=2", "sid"), "abc.def");
    assert.equal(readCookie('sid="quoted"', "sid"), "quoted");
    assert.equal(readCookie("xsid=1; sidx=2", "sid"), undefined);
    assert.equal(readCookie("__Host-sid=v", "__Host-sid"), "v");
    assert.equal(readCookie(undefined, "sid"), undefined);
    assert.equal(readCookie("", "sid"), undefined);
  });

  it("reads a name only when `=` follows it at once, as every reader of the session cookie does", () => {
    assert.equal(readCookie("sid =x", "sid"), undefined);
    assert.equal(readCookie("a=1;sid=y", "sid"), "y");
    assert.equal(readCookie("a=1;   sid= y ", "sid"), "y");
  });

  it("writes a cookie that expires with the session", () => {
    const now = Date.UTC(2026, 0, 1);
    const value = sessionCookie("sid", "t", now + 90_500, now, { secure: false });
    assert.equal(value, `sid=t; Max-Age=90; Expires=${new Date(now + 90_000).toUTCString()}; Path=/; HttpOnly; SameSite=Lax`);
    assert.match(sessionCookie("__Host-sid", "t", now + 1000, now, { secure: true }), /; Secure$/);
    assert.match(clearedSessionCookie("sid", { secure: false }), /^sid=; Max-Age=0; Expires=Thu, 01 Jan 1970/);
  });

  it("refuses to write a __Host- or __Secure- cookie without Secure, which a browser would drop", () => {
    const now = Date.UTC(2026, 0, 1);
    assert.throws(() => sessionCookie("__Host-sid", "t", now + 1000, now, { secure: false }), /must be Secure/);
    assert.throws(() => clearedSessionCookie("__Secure-sid", { secure: false }), /must be Secure/);
    const written = sessionCookie("__Host-sid", "t", now + 1000, now, { secure: true });
    assert.match(written, /; Path=\//);
    assert.doesNotMatch(written, /Domain=/i);
  });
});
