import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { simpleParser } from "mailparser";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { tokenOf } from "../src/mail/smtp-test-server.js";
import { Client, freePort, startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * Recovery and verification as a person does them, in Debian's Chromium: the
 * mail is the `.eml` file a fresh install writes, its link is opened in the
 * browser, and the pages act only when the person submits.
 */
const CHROMIUM = "/usr/bin/chromium";
const missing = !existsSync(CHROMIUM);
const skip = missing && process.env.CI !== "true" ? `${CHROMIUM} is missing` : false;

const PASSWORD = "correct horse battery staple";
const NEW_PASSWORD = "a different long passphrase";

function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(error.message));
  return errors;
}

describe("recovery and verification pages in Chromium", { skip, timeout: 180_000 }, () => {
  let dir: string;
  let outbox: string;
  let latch: LatchProcess;
  let browser: Browser;
  let base: string;

  /** The link in the newest message whose subject matches, once it is written. */
  async function linkIn(subject: string, count: number): Promise<string> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const files = existsSync(outbox)
        ? readdirSync(outbox)
            .filter((f) => f.endsWith(".eml"))
            .sort()
        : [];
      const parsed = await Promise.all(files.map(async (f) => simpleParser(readFileSync(join(outbox, f)))));
      const matching = parsed.filter((m) => m.subject === subject);
      if (matching.length >= count) {
        const text = matching[count - 1]!.text ?? "";
        const link = /(http:\/\/\S+#token=[A-Za-z0-9_-]{43})/.exec(text)?.[1];
        assert.ok(link !== undefined && tokenOf(text) !== null);
        return link;
      }
      if (Date.now() > deadline) throw new Error(`no message "${subject}" #${count}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  before(async () => {
    if (missing) throw new Error(`CI=true and ${CHROMIUM} is missing`);
    dir = mkdtempSync(join(tmpdir(), "latch-recovery-web-"));
    outbox = join(dir, "outbox");
    const port = await freePort();
    // Passkeys need localhost, and links are built from PUBLIC_URL: the browser uses that origin throughout.
    latch = await startLatch({ DATABASE_URL: `sqlite:${join(dir, "web.db")}`, MAIL_OUTBOX: outbox }, { port });
    base = `http://localhost:${port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
  });

  after(async () => {
    await browser?.close();
    await latch?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("verifies the email from its link only on submit; the account page shows the state, sends again and changes the email", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = watchConsole(page);
    await page.goto(`${base}/account/signup`);
    await page.getByLabel("Username", { exact: true }).fill("page.person");
    await page.getByLabel("Email (optional)", { exact: true }).fill("page.person@example.com");
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.waitForURL(/\/account$/);
    assert.equal(await page.locator('[data-field="email-verified"]').textContent(), "Not verified");

    await page.getByRole("button", { name: "Send the verification message again" }).click();
    await page.waitForURL(/notice=verification-sent/);
    const link = await linkIn("Confirm your email address", 2);
    assert.ok(link.startsWith(`${base}/account/verify-email#token=`));

    // A scanner (or a prefetch) that opens the link consumes nothing.
    const scanner = await browser.newContext();
    const scanned = await scanner.newPage();
    await scanned.goto(link);
    await scanned.close();
    await scanner.close();

    const verifier = await context.newPage();
    await verifier.goto(link);
    assert.equal(new URL(verifier.url()).hash, "", "the token leaves the address bar");
    await verifier.getByRole("button", { name: "Confirm my email address" }).click();
    await verifier.waitForURL(/notice=email-verified/);
    assert.match((await verifier.locator(".notice").textContent()) ?? "", /verified/);
    await verifier.close();

    await page.goto(`${base}/account`);
    assert.equal(await page.locator('[data-field="email-verified"]').textContent(), "Verified");
    assert.equal(await page.getByRole("button", { name: "Send the verification message again" }).count(), 0);

    await page.getByLabel("New email address").fill("page.person2@example.com");
    await page.getByLabel("Password, to confirm the change").fill(PASSWORD);
    await page.getByRole("button", { name: "Change email address" }).click();
    await page.waitForURL(/notice=email-changed/);
    assert.equal(await page.locator('[data-field="email"]').textContent(), "page.person2@example.com");
    assert.equal(await page.locator('[data-field="email-verified"]').textContent(), "Not verified");
    assert.deepEqual(errors, []);
    await context.close();
  });

  it("resets a forgotten password through the pages and signs in with the new one", async () => {
    const client = new Client(latch.url);
    assert.equal(
      (await client.request("POST", "/register", { username: "forgetful", password: PASSWORD, email: "forgetful@example.com" })).status,
      201,
    );
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = watchConsole(page);
    await page.goto(`${base}/account/signin`);
    await page.getByRole("link", { name: "Forgot your password?" }).click();
    await page.waitForURL(/\/account\/forgot$/);
    await page.getByLabel("Username or email").fill("forgetful@example.com");
    await page.getByRole("button", { name: "Send the link" }).click();
    await page.waitForURL(/notice=reset-sent/);

    const link = await linkIn("Reset your password", 1);
    await page.goto(link);
    await page.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel("Repeat the new password").fill("not the same passphrase");
    await page.getByRole("button", { name: "Set the new password" }).click();
    await page.getByText("The new passwords do not match.").waitFor();
    await page.getByLabel("Repeat the new password").fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "Set the new password" }).click();
    await page.waitForURL(/\/account\/signin\?notice=password-reset/);

    assert.equal((await client.request("GET", "/me")).status, 401, "the reset ended the old session");
    await page.getByLabel("Username or email").fill("forgetful");
    await page.getByLabel("Password", { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.waitForURL(/\/account$/);
    await page.goto(link);
    await page.getByLabel("New password", { exact: true }).fill("yet another passphrase");
    await page.getByLabel("Repeat the new password").fill("yet another passphrase");
    await page.getByRole("button", { name: "Set the new password" }).click();
    await page.getByText(/invalid, used or expired/).waitFor();
    assert.deepEqual(errors, []);
    await context.close();
  });
});
