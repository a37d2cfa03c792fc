import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeUserAgent, formatDateTime, timeAgo } from "./device.js";

describe("describeUserAgent", () => {
  const cases: Array<[string | null, string]> = [
    ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"],
    [
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
      "Chrome on Windows",
    ],
    [
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
      "Edge on Windows",
    ],
    [
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
      "Safari on macOS",
    ],
    [
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
      "Safari on iOS",
    ],
    [
      "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
      "Chrome on Android",
    ],
    [
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0.0.0 Safari/537.36",
      "Headless Chrome on Linux",
    ],
    ["curl/8.5.0", "curl"],
    [null, "Unknown device"],
    ["   ", "Unknown device"],
    ["SomeBot/1.0", "SomeBot/1.0"],
    ["x".repeat(100), `${"x".repeat(40)}…`],
  ];
  for (const [userAgent, expected] of cases) {
    it(`describes ${JSON.stringify(userAgent?.slice(0, 50) ?? null)} as ${JSON.stringify(expected)}`, () => {
      assert.equal(describeUserAgent(userAgent), expected);
    });
  }
});

describe("timeAgo and formatDateTime", () => {
  it("says how long ago, in the largest whole unit", () => {
    const now = Date.UTC(2025, 0, 10, 12);
    assert.equal(timeAgo(now, now), "just now");
    assert.equal(timeAgo(now + 5000, now), "just now", "a clock slightly ahead is not 'in the future'");
    assert.equal(timeAgo(now - 59_000, now), "just now");
    assert.equal(timeAgo(now - 60_000, now), "1 minute ago");
    assert.equal(timeAgo(now - 59 * 60_000, now), "59 minutes ago");
    assert.equal(timeAgo(now - 3_600_000, now), "1 hour ago");
    assert.equal(timeAgo(now - 3 * 86_400_000, now), "3 days ago");
  });

  it("formats a UTC date and time to the minute", () => {
    assert.equal(formatDateTime(Date.UTC(2025, 2, 14, 9, 26, 53)), "2025-03-14 09:26 UTC");
  });
});
