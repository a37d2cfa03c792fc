import type { FastifyInstance } from "fastify";
import QRCode from "qrcode";
import { openText } from "../../core/key-sealing.js";
import { totpUri } from "../../core/totp.js";
import { authenticateCookie } from "../../server/auth.js";
import type { ServerContext } from "../../server/context.js";
import { formatDateTime, timeAgo } from "../device.js";
import { html, raw } from "../html.js";
import type { SafeHtml } from "../html.js";
import { actionForm, formError, layout, sendPage } from "./layout.js";
import type { PageViewer } from "./layout.js";

/** `GET /mfa` as the account page reads it. */
export interface ApiSecondFactors {
  totp: boolean;
  totpSetupPending?: boolean;
  recoveryCodesLeft: number;
  passkeys: number;
}

/** A passkey as `GET /passkeys` returns it. */
export interface ApiPasskey {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
}

/** Where recovery codes appear once: filled by the page script from the API's answer, as text. */
function recoveryCodesPanel(doneHref: string): SafeHtml {
  return html`<section id="recovery-codes" class="card" aria-labelledby="codes-heading" hidden>
<h2 id="codes-heading" tabindex="-1">Your recovery codes</h2>
<p>Each code signs you in once if you lose your authenticator. <strong>They are shown only now:</strong> copy them somewhere safe, such as a password manager.</p>
<ol class="codes"></ol>
<div class="actions"><button type="button" class="secondary" data-copy-codes>Copy the codes</button> <a href="${doneHref}">Done</a></div>
</section>`;
}

function passkeyRow(passkey: ApiPasskey, now: number): SafeHtml {
  const nameId = `passkey-name-${passkey.id}`;
  return html`<tr>
  <td>${actionForm(
    "passkey-rename",
    html`<div class="inline-form">
  <label class="visually-hidden" for="${nameId}">Name of passkey ${passkey.name}</label>
  <input type="text" id="${nameId}" name="name" value="${passkey.name}" maxlength="64" required>
  <button type="submit" class="secondary small">Rename<span class="visually-hidden"> ${passkey.name}</span></button>
</div>`,
    { "passkey-id": passkey.id, "error-target": "passkeys-alert" },
  )}</td>
  <td class="nowrap"><time datetime="${passkey.createdAt}">${formatDateTime(Date.parse(passkey.createdAt))}</time></td>
  <td class="nowrap">${passkey.lastUsedAt === null ? html`<span class="muted">never</span>` : html`<time datetime="${passkey.lastUsedAt}">${timeAgo(Date.parse(passkey.lastUsedAt), now)}</time>`}</td>
  <td>${actionForm(
    "passkey-remove",
    html`<button type="submit" class="danger small">Remove<span class="visually-hidden"> ${passkey.name}</span></button>`,
    {
      "passkey-id": passkey.id,
      "error-target": "passkeys-alert",
      confirm: `Remove the passkey "${passkey.name}"? You will not be able to sign in with it any more.`,
    },
  )}</td>
</tr>`;
}

/**
 * The account page's second-factor sections: TOTP (set up, turn off, new
 * recovery codes) and passkeys (add, rename, remove).
 */
export function secondFactorSections(factors: ApiSecondFactors, passkeys: ApiPasskey[], now: number): SafeHtml {
  const totp = factors.totp
    ? html`<p><span class="badge">On</span> Signing in with your password also asks for a code from your authenticator app. ${factors.recoveryCodesLeft} recovery code${factors.recoveryCodesLeft === 1 ? "" : "s"} left.</p>
<div class="grid-2">
${actionForm(
  "recovery-codes",
  html`${formError()}
<div class="field">
  <label for="codes-password">New recovery codes</label>
  <span class="hint" id="codes-password-hint">Your password, to confirm. The old codes stop working.</span>
  <input type="password" id="codes-password" name="password" autocomplete="current-password" required maxlength="256" aria-describedby="codes-password-hint">
</div>
<div class="actions"><button type="submit" class="secondary">Get new recovery codes</button></div>`,
)}
${actionForm(
  "totp-disable",
  html`${formError()}
<div class="field">
  <label for="totp-off-password">Turn off</label>
  <span class="hint" id="totp-off-password-hint">Your password, to confirm.</span>
  <input type="password" id="totp-off-password" name="password" autocomplete="current-password" required maxlength="256" aria-describedby="totp-off-password-hint">
</div>
<div class="actions"><button type="submit" class="danger">Turn off the authenticator app</button></div>`,
  { confirm: "Turn off two-step sign-in with the authenticator app? Its recovery codes stop working too." },
)}
</div>`
    : html`<p>Add a second step to signing in with your password: a 6-digit code from an authenticator app (Google Authenticator, 1Password, Aegis, …).</p>
${actionForm("totp-begin", html`${formError()}<div class="actions"><button type="submit">Set up an authenticator app</button></div>`)}`;

  return html`<section class="card" aria-labelledby="totp-heading" data-hide-with-codes>
<h2 id="totp-heading">Authenticator app</h2>
${totp}
</section>
${recoveryCodesPanel("/account")}

<section class="card" aria-labelledby="passkeys-heading">
<h2 id="passkeys-heading">Passkeys</h2>
<p class="muted">A passkey signs you in with your device's fingerprint, face or PIN instead of your password: it cannot be phished or reused.</p>
<p class="alert" role="alert" id="passkeys-alert" hidden></p>
${
  passkeys.length === 0
    ? html`<p class="muted">No passkeys yet.</p>`
    : html`<div class="table-wrap">
<table class="passkeys">
  <thead><tr><th scope="col">Name</th><th scope="col">Added</th><th scope="col">Last used</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>
${passkeys.map((p) => passkeyRow(p, now))}
  </tbody>
</table>
</div>`
}
${actionForm(
  "passkey-add",
  html`${formError()}
<div class="field">
  <label for="passkey-name">Name (optional)</label>
  <span class="hint" id="passkey-name-hint">So you can tell your passkeys apart, e.g. "Work laptop".</span>
  <input type="text" id="passkey-name" name="name" maxlength="64" autocomplete="off" aria-describedby="passkey-name-hint">
</div>
<div class="actions"><button type="submit">Add a passkey</button></div>`,
)}
</section>`;
}

/**
 * GET /account/totp: the pending TOTP setup (started by POST /mfa/totp from
 * the account page): its QR code, rendered here as SVG by the qrcode
 * package, the secret as text beside it, and the confirm form. Without a
 * pending setup, back to /account.
 *
 * @example
 * secondFactorPages(app, ctx);
 */
export function secondFactorPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get("/account/totp", async (request, reply) => {
    const auth = await authenticateCookie(ctx, request, reply);
    if (auth === null) return reply.redirect("/account/signin", 302);
    const row = await ctx.stores.secondFactors.findTotp(auth.user.id);
    if (row === null || row.pendingSecret === null) return reply.redirect("/account", 302);
    const secret = openText(row.pendingSecret, auth.user.id, ctx.config.mfaKeySecret, "latch-totp-secrets", {
      name: "MFA_KEY_SECRET",
      what: "TOTP secret",
    });
    const uri = totpUri(secret, auth.user.username);
    // The SVG is the qrcode package's output for our own URI: paths only, no
    // text from the request, so it is inserted as markup.
    const svg = await QRCode.toString(uri, { type: "svg", errorCorrectionLevel: "M", margin: 1 });
    const viewer: PageViewer = { user: auth.user, csrfToken: ctx.sessions.csrfToken(auth.cookie!) };
    const grouped = secret.match(/.{1,4}/g)!.join(" ");
    const page = html`<h1>Set up an authenticator app</h1>
<section class="card" aria-labelledby="scan-heading" data-hide-with-codes>
<h2 id="scan-heading">1. Scan the code</h2>
<div class="grid-2">
<figure class="qr" role="img" aria-label="QR code of your authenticator secret">${raw(svg)}</figure>
<div>
<p>Scan it with your authenticator app. Cannot scan? Enter this key by hand (time-based, 6 digits):</p>
<p class="secret" data-field="totp-secret">${grouped}</p>
<p class="muted">The key is shown only during setup. Anyone who has it can make your codes: do not share it.</p>
</div>
</div>
<h2>2. Enter the code the app shows</h2>
${actionForm(
  "totp-confirm",
  html`${formError()}
<div class="field">
  <label for="totp-code">Code</label>
  <input type="text" class="code" id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required maxlength="7">
</div>
<div class="actions"><button type="submit">Turn on</button> <a href="/account">Cancel</a></div>`,
)}
</section>
${recoveryCodesPanel("/account?notice=totp-enabled")}`;
    return sendPage(reply, 200, layout({ title: "Set up an authenticator app", viewer }, page));
  });
}
