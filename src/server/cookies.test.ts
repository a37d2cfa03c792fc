import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { truncateAddress } from "./client-address.js";
import { clearedSessionCookie, readCookie, sessionCookie } from "./cookies.js";

describe("cookies", () => {
  it("reads one cookie among many, quoted or not", () => {
    assert.equal(readCookie("a=1; sid=abc.def; b=2", "sid"), "abc.def");
    assert.equal(readCookie('sid="quoted"', "sid"), "quoted");
    assert.equal(readCookie("xsid=1; sidx=2", "sid"), undefined);
    assert.equal(readCookie("__Host-sid=v", "__Host-sid"), "v");
    assert.equal(readCookie(undefined, "sid"), undefined);
    assert.equal(readCookie("", "sid"), undefined);
  });

  it("writes a cookie that expires with the session", () => {
    const now = Date.UTC(2026, 0, 1);
    const value = sessionCookie("sid", "t", now + 90_500, now, { production: false });
    assert.equal(value, `sid=t; Max-Age=90; Expires=${new Date(now + 90_000).toUTCString()}; Path=/; HttpOnly; SameSite=Lax`);
    assert.match(sessionCookie("__Host-sid", "t", now + 1000, now, { production: true }), /; Secure$/);
    assert.match(clearedSessionCookie("sid", { production: false }), /^sid=; Max-Age=0; Expires=Thu, 01 Jan 1970/);
  });
});

describe("client addresses", () => {
  it("truncate IPv4 to /24 and IPv6 to /48", () => {
    assert.equal(truncateAddress("203.0.113.77"), "203.0.113.0");
    assert.equal(truncateAddress("::ffff:198.51.100.9"), "198.51.100.0");
    assert.equal(truncateAddress("2001:db8:abcd:12:1:2:3:4"), "2001:db8:abcd::");
    assert.equal(truncateAddress("2001:db8::1"), "2001:db8:0::");
    assert.equal(truncateAddress("::1"), "0:0:0::");
    assert.equal(truncateAddress(undefined), null);
    assert.equal(truncateAddress("not an ip"), null);
  });
});
