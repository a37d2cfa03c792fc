import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Secret, TOTP } from "otpauth";
import { chromium } from "playwright-core";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { freePort, ROOT, startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * Second factors as a person meets them, in Debian's Chromium with its
 * virtual WebAuthn authenticator (CDP `WebAuthn.addVirtualAuthenticator`:
 * CTAP2, built in, resident keys, user verification): passkeys through the
 * pages and the API, and TOTP from the QR page. The server is a real Latch
 * process, reached at http://localhost:PORT (WebAuthn refuses IP
 * addresses) with PUBLIC_URL saying so. Each step of the person's walk is
 * saved as a screenshot under test/screenshots/second-factors/ (gitignored).
 */
const CHROMIUM = "/usr/bin/chromium";
const missing = !existsSync(CHROMIUM);
const skip = missing && process.env.CI !== "true" ? `${CHROMIUM} is missing: apt-get install -y chromium to run the browser check` : false;
if (skip !== false) console.log(`# skipping the passkey browser check: ${skip}`);

const PASSWORD = "correct horse battery staple";
const SHOTS = join(ROOT, "test", "screenshots", "second-factors");

function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(error.message));
  return errors;
}

async function withAuthenticator(context: BrowserContext, page: Page): Promise<void> {
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });
}

const codeNow = (secret: string): string => TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() });

describe("second factors in Chromium", { skip, timeout: 240_000 }, () => {
  let dir: string;
  let latch: LatchProcess;
  let browser: Browser;
  let url: string;
  const shots: string[] = [];

  async function shot(page: Page, name: string): Promise<void> {
    const path = join(SHOTS, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    shots.push(path);
  }

  async function signUp(page: Page, username: string): Promise<void> {
    await page.goto(`${url}/account/signup`);
    await page.getByLabel("Username", { exact: true }).fill(username);
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.waitForURL(/\/account$/);
  }

  async function signOut(page: Page): Promise<void> {
    await page.getByRole("navigation", { name: "Account" }).getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/account\/signin\?notice=signed-out$/);
  }

  /** GET a JSON API path from the page, with its cookies. */
  const me = async (page: Page): Promise<{ user: { username: string; mfa: boolean }; session: { amr: string[] } }> =>
    (await page.evaluate(`fetch("/me").then((r) => r.json())`)) as { user: { username: string; mfa: boolean }; session: { amr: string[] } };

  before(async () => {
    if (missing) throw new Error(`CI=true and ${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
    dir = mkdtempSync(join(tmpdir(), "latch-mfa-web-"));
    mkdirSync(SHOTS, { recursive: true });
    const port = await freePort();
    url = `http://localhost:${port}`;
    latch = await startLatch(
      { DATABASE_URL: `sqlite:${join(dir, "mfa.db")}`, PUBLIC_URL: url, MFA_KEY_SECRET: "browser test key for TOTP secrets at rest" },
      { port },
    );
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
    if (shots.length > 0) console.log(`# screenshots:\n${shots.map((s) => `#   ${s}`).join("\n")}`);
  });

  it("signs up, adds a passkey, signs out, and 'Sign in with a passkey' lands on the account page", async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    const errors = watchConsole(page);
    try {
      await withAuthenticator(context, page);
      await signUp(page, "pass.key.person");
      await shot(page, "01-signed-up");

      await page.getByLabel("Name (optional)").fill("Test laptop");
      await page.getByRole("button", { name: "Add a passkey" }).click();
      await page.waitForURL(/notice=passkey-added/);
      await page.getByText("Your passkey has been added").waitFor();
      assert.equal(await page.getByRole("table").filter({ hasText: "Added" }).locator("input[name=name]").inputValue(), "Test laptop");
      assert.equal((await me(page)).user.mfa, true);
      await shot(page, "02-passkey-added");

      await signOut(page);
      await shot(page, "03-signed-out");

      await page.getByRole("button", { name: "Sign in with a passkey" }).click();
      await page.waitForURL(/\/account$/);
      await page.getByRole("heading", { name: "Your account" }).waitFor();
      const who = await me(page);
      assert.equal(who.user.username, "pass.key.person");
      assert.deepEqual(who.session.amr, ["hwk", "mfa"]);
      await shot(page, "04-signed-in-with-passkey");
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("through the API: registers, refuses a forged registration, a replayed assertion and a deleted passkey", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await withAuthenticator(context, page);
      await signUp(page, "api.passkey.person");
      // Plain JavaScript, run in the page: the browser's own WebAuthn through @simplewebauthn/browser.
      const results = (await page.evaluate(String.raw`(async () => {
        const lib = window.SimpleWebAuthnBrowser;
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const post = async (path, body, headers = {}) => {
          const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
          return { status: response.status, body: await response.json().catch(() => null) };
        };
        const out = {};
        // Register through the API.
        const { body: reg } = await post("/passkeys/register/options", undefined, { "x-csrf-token": csrf });
        out.noAllowList = reg.options.excludeCredentials.length === 0;
        const created = await lib.startRegistration({ optionsJSON: reg.options });
        // A forged copy: the client data says another origin.
        const forged = structuredClone(created);
        const clientData = JSON.parse(atob(forged.response.clientDataJSON.replace(/-/g, "+").replace(/_/g, "/")));
        clientData.origin = "https://evil.example";
        forged.response.clientDataJSON = btoa(JSON.stringify(clientData)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
        out.forged = (await post("/passkeys/register", { response: forged }, { "x-csrf-token": csrf })).status;
        // The forged attempt used up this browser's challenge: the real response now needs a fresh one.
        out.afterForgedChallengeUsed = (await post("/passkeys/register", { response: created }, { "x-csrf-token": csrf })).status;
        const { body: reg2 } = await post("/passkeys/register/options", undefined, { "x-csrf-token": csrf });
        out.excluded = reg2.options.excludeCredentials.length;
        const created2 = await lib.startRegistration({ optionsJSON: { ...reg2.options, excludeCredentials: [] } }).catch((e) => e.name);
        const registered = typeof created2 === "string" ? { status: created2 } : await post("/passkeys/register", { response: created2, name: "API key" }, { "x-csrf-token": csrf });
        out.registered = registered.status;
        out.passkeyId = registered.body?.passkey?.id;
        out.list = (await (await fetch("/passkeys")).json()).passkeys.length;

        // Sign out, then sign in with the API and replay the same assertion.
        await post("/logout", undefined, { "x-csrf-token": csrf });
        const { body: login } = await post("/passkeys/login/options");
        out.loginAllowList = login.options.allowCredentials === undefined || login.options.allowCredentials.length === 0;
        const assertion = await lib.startAuthentication({ optionsJSON: login.options });
        out.signIn = (await post("/passkeys/login", { response: assertion })).status;
        out.replaySameChallenge = (await post("/passkeys/login", { response: assertion })).status;
        await post("/passkeys/login/options");
        const replay = await post("/passkeys/login", { response: assertion });
        out.replayNewChallenge = replay.status;
        out.replayCode = replay.body?.error?.code;

        // An assertion made, then its passkey deleted, then submitted.
        const { body: login2 } = await post("/passkeys/login/options");
        const pending = await lib.startAuthentication({ optionsJSON: login2.options });
        const csrf2 = (await (await fetch("/csrf-token")).json()).csrfToken;
        for (const p of (await (await fetch("/passkeys")).json()).passkeys) {
          out.deleted = (await fetch("/passkeys/" + p.id, { method: "DELETE", headers: { "x-csrf-token": csrf2 } })).status;
        }
        out.deletedPasskey = (await post("/passkeys/login", { response: pending })).status;
        out.mfaAfterDelete = (await (await fetch("/me")).json()).user.mfa;
        return out;
      })()`)) as Record<string, unknown>;
      assert.equal(results.noAllowList, true);
      assert.equal(results.forged, 400, "a response for another origin does not verify");
      assert.equal(results.afterForgedChallengeUsed, 400, "a challenge is used once");
      assert.equal(results.excluded, 0);
      assert.equal(results.registered, 201);
      assert.equal(results.list, 1);
      assert.equal(results.loginAllowList, true);
      assert.equal(results.signIn, 200);
      assert.equal(results.replaySameChallenge, 401, "a replayed assertion, no challenge left");
      assert.equal(results.replayNewChallenge, 401, "a replayed assertion against a new challenge");
      assert.equal(results.replayCode, "invalid_credentials");
      assert.equal(results.deleted, 204);
      assert.equal(results.deletedPasskey, 401, "a deleted passkey is refused");
    } finally {
      await context.close();
    }
  });

  it("sets up TOTP from the QR page, signs out, and signs in with the password and the code", async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    const errors = watchConsole(page);
    try {
      await signUp(page, "totp.person");
      await page.getByRole("button", { name: "Set up an authenticator app" }).click();
      await page.waitForURL(/\/account\/totp$/);
      assert.equal(await page.locator("figure.qr svg").count(), 1, "the QR code is an inline SVG");
      const secret = (await page.locator('[data-field="totp-secret"]').textContent())!.replace(/\s/g, "");
      assert.match(secret, /^[A-Z2-7]{32}$/);
      await shot(page, "05-totp-qr-page");

      await page.locator("#totp-code").fill(codeNow(secret));
      await page.getByRole("button", { name: "Turn on" }).click();
      await page.getByRole("heading", { name: "Your recovery codes" }).waitFor();
      assert.equal(await page.locator("#recovery-codes ol li").count(), 10);
      await shot(page, "06-recovery-codes");
      await page.getByRole("link", { name: "Done" }).click();
      await page.waitForURL(/\/account\?notice=totp-enabled$/);
      await page.getByText("10 recovery codes left").waitFor();
      await shot(page, "07-totp-on");

      await signOut(page);
      await page.getByLabel("Username or email").fill("totp.person");
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.getByRole("heading", { name: "Enter your code" }).waitFor();
      await shot(page, "08-code-step");
      // The confirming code's step was used: wait for the next one, as a person would for the next code.
      await new Promise((resolve) => setTimeout(resolve, 30_000 - (Date.now() % 30_000) + 200));
      await page.locator("#signin-code").fill(codeNow(secret));
      await page.getByRole("button", { name: "Verify" }).click();
      await page.waitForURL(/\/account$/);
      assert.deepEqual((await me(page)).session.amr, ["pwd", "otp", "mfa"]);
      await shot(page, "09-signed-in-with-code");
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
