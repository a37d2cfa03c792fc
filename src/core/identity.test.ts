import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isLatchError } from "./errors.js";
import { checkNewPassword, loginKey, normaliseEmail, normaliseUsername } from "./identity.js";

describe("usernames", () => {
  it("are NFKC-normalised and keyed case-insensitively", () => {
    assert.deepEqual(normaliseUsername("Alice"), { username: "Alice", key: "alice" });
    assert.deepEqual(normaliseUsername("Ａｌｉｃｅ"), { username: "Alice", key: "alice" });
    assert.equal(normaliseUsername("ﬁnn").key, "finn");
  });

  it("allow letters, digits, dot, underscore and hyphen, 3 to 64 characters", () => {
    for (const ok of ["abc", "a.b_c-d", "Ünïcödé", "用户名", "x".repeat(64)])
      assert.equal(normaliseUsername(ok).username, ok.normalize("NFKC"));
    for (const bad of ["ab", "x".repeat(65), "a b", "a@b", "a/b", "a\u0000b", "<script>", "", 12]) {
      assert.throws(
        () => normaliseUsername(bad),
        (e) => isLatchError(e, "invalid_input"),
        String(bad),
      );
    }
  });
});

describe("emails and login keys", () => {
  it("normalise emails and refuse invalid ones", () => {
    assert.deepEqual(normaliseEmail(" Bob@Example.COM "), { username: "Bob@Example.COM", key: "bob@example.com" });
    for (const bad of ["bob", "bob@", "@x.com", "a b@x.com", "x@y", 5]) assert.throws(() => normaliseEmail(bad), String(bad));
  });

  it("turn a login into a key, or null when it cannot match", () => {
    assert.equal(loginKey("ＢＯＢ"), "bob");
    assert.equal(loginKey(""), null);
    assert.equal(loginKey({}), null);
    assert.equal(loginKey("x".repeat(300)), null);
  });
});

describe("new passwords", () => {
  it("accept 8 to 256 characters of any Unicode, normalised", () => {
    assert.equal(checkNewPassword("ﬁﬁﬁﬁ-ok-pw", "someone"), "fifififi-ok-pw");
    assert.equal(checkNewPassword("🔐".repeat(8), "someone"), "🔐".repeat(8));
    assert.equal(checkNewPassword("y".repeat(255) + "z", "someone").length, 256);
  });

  it("count code points, not UTF-16 units", () => {
    assert.throws(() => checkNewPassword("🔐".repeat(7), "someone"));
  });

  it("refuse short, long, common, username-equal and non-string passwords", () => {
    for (const [bad, user] of [
      ["short", "u"],
      ["x".repeat(257), "u"],
      ["password1", "u"],
      ["iloveyou", "u"],
      ["Qwerty123", "u"],
      ["JohnSmith99", "johnsmith99"],
      [null, "u"],
    ] as const) {
      assert.throws(
        () => checkNewPassword(bad, user),
        (e) => isLatchError(e, "invalid_input"),
        String(bad),
      );
    }
  });
});
