import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { truncateAddress } from "./client-address.js";

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
