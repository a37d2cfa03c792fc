import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { Client, startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * The pages as a person uses them: a real Latch process on SQLite and Debian's
 * Chromium driven by playwright-core (never a downloaded browser build). CI
 * must have the browser, so there a missing one fails; on a developer's
 * machine without it the suite is skipped and says why.
 */
const CHROMIUM = "/usr/bin/chromium";
const missing = !existsSync(CHROMIUM);
const skip = missing && process.env.CI !== "true" ? `${CHROMIUM} is missing: apt-get install -y chromium to run the browser check` : false;
if (skip !== false) console.log(`# skipping the browser check: ${skip}`);

const PASSWORD = "correct horse battery staple";
const NEW_PASSWORD = "a different long passphrase";
const ADMIN = { username: "web.admin", password: "the admin's own passphrase" };

/**
 * Console errors include CSP violations: a page that needed an inline script
 * or style would log one. Failed loads are left out: the API's expected
 * refusals (a wrong password is a 401) log one each.
 */
function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) errors.push(message.text());
  });
  page.on("response", (response) => {
    // Only the API may refuse; a page, asset or icon that is missing is a bug.
    if (response.status() === 404) errors.push(`404 ${response.url()}`);
  });
  page.on("pageerror", (error) => errors.push(error.message));
  return errors;
}

describe("the web pages in Chromium", { skip, timeout: 180_000 }, () => {
  let dir: string;
  let latch: LatchProcess;
  let browser: Browser;

  before(async () => {
    if (missing) throw new Error(`CI=true and ${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
    dir = mkdtempSync(join(tmpdir(), "latch-web-"));
    latch = await startLatch({
      DATABASE_URL: `sqlite:${join(dir, "web.db")}`,
      ADMIN_USERNAME: ADMIN.username,
      ADMIN_PASSWORD: ADMIN.password,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
  });

  after(async () => {
    await browser?.close();
    await latch?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("signs up, signs out and in, changes the password, signs out other sessions and deletes the account", async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    const errors = watchConsole(page);
    try {
      await page.goto(`${latch.url}/`);
      assert.equal(page.url(), `${latch.url}/account/signin`);

      await page.getByRole("link", { name: "Create an account" }).click();
      await page.waitForURL(/\/account\/signup$/);
      await page.getByLabel("Username", { exact: true }).fill("web.person");
      await page.getByLabel("Email (optional)", { exact: true }).fill("web.person@example.com");
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByRole("button", { name: "Create account" }).click();
      await page.waitForURL(/\/account$/);

      assert.equal(await page.locator('[data-field="username"]').textContent(), "web.person");
      assert.equal(await page.locator('[data-field="email"]').textContent(), "web.person@example.com");
      assert.equal(await page.locator("table.sessions tbody tr").count(), 1);
      assert.equal(await page.locator("table.sessions .badge").textContent(), "This device");
      assert.match((await page.locator("table.sessions tbody tr").textContent()) ?? "", /Headless Chrome on Linux|Chrome on Linux/);
      await page.screenshot({ path: "/tmp/latch-account.png", fullPage: true });

      await page.locator("header").getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/account\/signin\?notice=signed-out$/);
      assert.equal(await page.getByRole("status").textContent(), "You have signed out.");
      await page.goto(`${latch.url}/account`);
      assert.equal(page.url(), `${latch.url}/account/signin`, "the old session is gone");

      // Signing in by email, and a wrong password shown in the form's alert first.
      await page.getByLabel("Username or email", { exact: true }).fill("web.person@example.com");
      await page.getByLabel("Password", { exact: true }).fill("not the password");
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.getByRole("alert").filter({ hasText: "Invalid username or password." }).waitFor();
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.waitForURL(/\/account$/);

      await page.getByLabel("Current password", { exact: true }).fill(PASSWORD);
      await page.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
      await page.getByLabel("Repeat the new password", { exact: true }).fill(`${NEW_PASSWORD}!`);
      await page.getByRole("button", { name: "Change password" }).click();
      await page.getByRole("alert").filter({ hasText: "The new passwords do not match." }).waitFor();
      await page.getByLabel("Current password", { exact: true }).fill("not the password");
      await page.getByLabel("Repeat the new password", { exact: true }).fill(NEW_PASSWORD);
      await page.getByRole("button", { name: "Change password" }).click();
      await page.getByRole("alert").filter({ hasText: "The current password is wrong." }).waitFor();
      await page.getByLabel("Current password", { exact: true }).fill(PASSWORD);
      await page.getByRole("button", { name: "Change password" }).click();
      await page.waitForURL(/\/account\?notice=password-changed$/);
      assert.match((await page.getByRole("status").textContent()) ?? "", /Your password has been changed/);

      // Another device signs in; the page lists it, then signs it out.
      const other = new Client(latch.url);
      assert.equal((await other.request("POST", "/login", { username: "web.person", password: NEW_PASSWORD })).status, 200);
      await page.reload();
      assert.equal(await page.locator("table.sessions tbody tr").count(), 2);
      await page.getByRole("button", { name: "Sign out of every other session" }).click();
      await page.waitForURL(/\/account\?notice=others-signed-out$/);
      assert.equal(await page.locator("table.sessions tbody tr").count(), 1);
      assert.equal((await other.request("GET", "/protected")).status, 401);

      page.once("dialog", (dialog) => void dialog.accept());
      await page.getByLabel("Your password, to confirm", { exact: true }).fill(NEW_PASSWORD);
      await page.getByRole("button", { name: "Delete my account" }).click();
      await page.waitForURL(/\/account\/signin\?notice=account-deleted$/);
      await page.getByLabel("Username or email", { exact: true }).fill("web.person");
      await page.getByLabel("Password", { exact: true }).fill(NEW_PASSWORD);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.getByRole("alert").filter({ hasText: "Invalid username or password." }).waitFor();

      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("lets an admin list users, set roles and sign a user out everywhere", async () => {
    const member = new Client(latch.url);
    assert.equal(
      (await member.request("POST", "/register", { username: "web.member", password: PASSWORD, email: "o'brien&co@example.com" })).status,
      201,
    );
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const errors = watchConsole(page);
    try {
      await page.goto(`${latch.url}/account/signin`);
      await page.getByLabel("Username or email", { exact: true }).fill(ADMIN.username);
      await page.getByLabel("Password", { exact: true }).fill(ADMIN.password);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.waitForURL(/\/account$/);
      await page.getByRole("link", { name: "Go to the admin area" }).click();
      await page.waitForURL(/\/account\/admin$/);

      const row = page.locator("table.users tbody tr").filter({ hasText: "web.member" });
      assert.match((await row.textContent()) ?? "", /o'brien&co@example\.com/, "the email shows as typed, escaped in the markup");
      await page.getByLabel("Roles for web.member", { exact: true }).fill("user, support");
      await row.getByRole("button", { name: "Save roles for web.member" }).click();
      await page.waitForURL(/\/account\/admin\?notice=roles-saved$/);
      assert.match((await page.locator("table.users tbody tr").filter({ hasText: "web.member" }).textContent()) ?? "", /support/);
      assert.deepEqual((await member.request("GET", "/protected")).body.user.roles, ["user", "support"]);

      await page.getByLabel("Roles for web.member", { exact: true }).fill("Not A Role!");
      await page
        .locator("table.users tbody tr")
        .filter({ hasText: "web.member" })
        .getByRole("button", { name: "Save roles for web.member" })
        .click();
      await page.locator("#users-alert").filter({ hasText: "roles must be" }).waitFor();

      await page.screenshot({ path: "/tmp/latch-admin.png", fullPage: true });
      page.once("dialog", (dialog) => void dialog.accept());
      await page.getByRole("button", { name: "Sign out web.member everywhere" }).click();
      await page.waitForURL(/\/account\/admin\?notice=user-signed-out$/);
      assert.equal((await member.request("GET", "/protected")).status, 401);

      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("shows a signed-in user without the admin role a 403 page", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${latch.url}/account/signup`);
      await page.getByLabel("Username", { exact: true }).fill("web.plain");
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByRole("button", { name: "Create account" }).click();
      await page.waitForURL(/\/account$/);
      assert.equal(await page.getByRole("link", { name: "Go to the admin area" }).count(), 0);
      const response = await page.goto(`${latch.url}/account/admin`);
      assert.equal(response?.status(), 403);
      assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "Not allowed");
    } finally {
      await context.close();
    }
  });

  it("fits the account page's session table inside its card on a 390 px wide phone, with nothing to scroll sideways", async () => {
    // A second session from a desktop browser, so the table has a long device name and two rows.
    const desktop = new Client(latch.url);
    assert.equal((await desktop.request("POST", "/register", { username: "web.phone.owner", password: PASSWORD })).status, 201);
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 3,
      isMobile: true,
      hasTouch: true,
      userAgent:
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    });
    const page = await context.newPage();
    const errors = watchConsole(page);
    try {
      await page.goto(`${latch.url}/account/signin`);
      await page.getByLabel("Username or email", { exact: true }).fill("web.phone.owner");
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.waitForURL(/\/account$/);
      assert.equal(await page.locator("table.sessions tbody tr").count(), 2);
      // Runs in the page; typed loosely because this project's TypeScript has no DOM library.
      const fit = await page.evaluate(() => {
        const { document, window, getComputedStyle } = globalThis as any;
        const table = document.querySelector("table.sessions");
        const card = table.closest(".card");
        const wrap = document.querySelector(".table-wrap");
        const cardBox = card.getBoundingClientRect();
        const style = getComputedStyle(card);
        const inner = cardBox.right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
        const cells: number[] = [...table.querySelectorAll("td, th, button")].map((el: any) => el.getBoundingClientRect().right);
        return {
          tableRight: table.getBoundingClientRect().right as number,
          widestCell: Math.max(...cells),
          cardInner: inner,
          wrapScrolls: wrap.scrollWidth > wrap.clientWidth + 1,
          pageScrolls: document.documentElement.scrollWidth > window.innerWidth,
        };
      });
      await page.screenshot({ path: "/tmp/latch-account-390.png", fullPage: true });
      assert.ok(
        fit.tableRight <= fit.cardInner + 1 && fit.widestCell <= fit.cardInner + 1,
        `the table reaches ${fit.tableRight} (a cell ${fit.widestCell}), the card's content ends at ${fit.cardInner}`,
      );
      assert.equal(fit.wrapScrolls, false, "the table does not need a sideways scroll");
      assert.equal(fit.pageScrolls, false, "the page does not scroll sideways");
      // Still usable: every session has its own sign-out button, on screen.
      for (const button of await page.locator("table.sessions button").all()) assert.ok(await button.isVisible());
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
