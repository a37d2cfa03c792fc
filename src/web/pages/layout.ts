import type { FastifyReply } from "fastify";
import type { User } from "../../core/store.js";
import { assetUrls } from "../assets.js";
import { html } from "../html.js";
import type { HtmlValue, SafeHtml } from "../html.js";

/**
 * The pages' CSP. Everything comes from this origin and nothing is inline:
 * an injected `<script>` or `style=` does not run even if escaping were ever
 * missed. `form-action 'self'` keeps a planted form from posting elsewhere.
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/**
 * Messages shown after an action reloads a page with `?notice=<key>`. Only
 * these fixed texts can appear, so the query string cannot put words on the page.
 */
const NOTICES: Readonly<Record<string, string>> = {
  "signed-out": "You have signed out.",
  "account-deleted": "Your account and everything stored about it have been deleted.",
  "password-changed": "Your password has been changed, and every other session has been signed out.",
  "others-signed-out": "Every other session has been signed out.",
  "session-signed-out": "That session has been signed out.",
  "roles-saved": "The roles have been saved. They apply on the user's next request.",
  "user-signed-out": "That user has been signed out of every session.",
  "passkey-added": "Your passkey has been added. You can sign in with it from now on.",
  "passkey-renamed": "The passkey has been renamed.",
  "passkey-removed": "The passkey has been removed.",
  "totp-enabled": "Two-step sign-in is on: signing in with your password now also asks for a code from your app.",
  "totp-disabled": "Two-step sign-in with an authenticator app is off, and its recovery codes no longer work.",
  "user-mfa-removed": "That user's second factors have been removed and they have been signed out everywhere.",
  "code-step-expired": "That sign-in waited too long or had too many wrong codes. Sign in again.",
  "reset-sent": "If that account exists and has an email address, a link to reset its password is on its way. It works for 30 minutes.",
  "password-reset": "Your password has been reset and every session signed out. Sign in with the new password.",
  "email-verified": "Your email address is verified.",
  "verification-sent": "A new verification link is on its way to your email address.",
  "email-changed": "Your email address has been changed. We sent a link to the new address to verify it.",
};

/** The fixed text for a notice key from the query string, or null. */
export function noticeText(key: unknown): string | null {
  return typeof key === "string" && Object.hasOwn(NOTICES, key) ? NOTICES[key]! : null;
}

/** Who the page is for, when someone is signed in. */
export interface PageViewer {
  user: User;
  /** Rendered into `<meta name="csrf-token">` for the page script. */
  csrfToken: string;
}

export interface LayoutOptions {
  title: string;
  viewer?: PageViewer | null;
  /** A notice key from the query string; unknown keys show nothing. */
  notice?: unknown;
  /** A narrow column for the sign-in and sign-up forms, a wide one for tables. */
  width?: "narrow" | "normal" | "wide";
  /** Load @simplewebauthn/browser before the page script (pages with passkey buttons). */
  passkeys?: boolean;
}

/**
 * A `role="alert"` element for a form's errors; the page script fills it
 * with the API's message, as text.
 */
export function formError(): SafeHtml {
  return html`<p class="alert" role="alert" data-error hidden></p>`;
}

/** A form that the page script submits to the API; `method="post"` keeps passwords out of URLs if the script never loads. */
export function actionForm(action: string, content: HtmlValue, attributes: Readonly<Record<string, string>> = {}): SafeHtml {
  const extra = Object.entries(attributes).map(([name, value]) => html` data-${name}="${value}"`);
  return html`<form method="post" data-action="${action}"${extra}>${content}</form>`;
}

function header(viewer: PageViewer | null): SafeHtml {
  if (viewer === null) return html`<header class="site-header"><a class="brand" href="/">Latch</a></header>`;
  const isAdmin = viewer.user.roles.includes("admin");
  return html`<header class="site-header">
  <a class="brand" href="/">Latch</a>
  <nav aria-label="Account">
    <span class="muted">Signed in as <a href="/account"><strong>${viewer.user.username}</strong></a></span>
    ${isAdmin && html`<a href="/account/admin">Admin</a>`}
    ${actionForm("signout", html`<button type="submit" class="secondary small">Sign out</button>`)}
  </nav>
</header>`;
}

/**
 * The page around `content`: head, header, notice and a page-level alert.
 *
 * @example
 * sendPage(reply, 200, layout({ title: "Sign in", width: "narrow" }, html`<h1>Sign in</h1>`));
 */
export function layout(options: LayoutOptions, content: SafeHtml): SafeHtml {
  const viewer = options.viewer ?? null;
  const notice = noticeText(options.notice);
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${viewer !== null && html`<meta name="csrf-token" content="${viewer.csrfToken}">`}
<title>${options.title} · Latch</title>
<link rel="icon" href="${assetUrls.icon}" type="image/svg+xml">
<link rel="stylesheet" href="${assetUrls.stylesheet}">
${options.passkeys === true && html`<script src="${assetUrls.webauthn}" defer></script>`}
<script src="${assetUrls.script}" defer></script>
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
${header(viewer)}
<main id="main"${options.width !== undefined && options.width !== "normal" && html` class="${options.width}"`}>
${notice !== null && html`<p class="notice" role="status">${notice}</p>`}
<p id="page-alert" class="alert" role="alert" hidden></p>
<noscript><p class="alert">These pages need JavaScript to sign in and to make changes.</p></noscript>
${content}
</main>
</body>
</html>
`;
}

/**
 * Sends a page with the pages' CSP (replacing the API's stricter default),
 * as UTF-8 HTML. `Cache-Control: no-store` from the global hook stays: pages
 * show personal data and carry a CSRF token.
 */
export function sendPage(reply: FastifyReply, status: number, page: SafeHtml): FastifyReply {
  return reply.code(status).header("content-security-policy", PAGE_CSP).type("text/html; charset=utf-8").send(page.toString());
}

/** A short page for a refusal or failure: 403, 404, 5xx. */
export function statusPage(options: { title: string; message: string; viewer?: PageViewer | null }): SafeHtml {
  return layout(
    { title: options.title, viewer: options.viewer ?? null, width: "narrow" },
    html`<div class="card">
<h1>${options.title}</h1>
<p>${options.message}</p>
<p><a href="/account">Back to your account</a></p>
</div>`,
  );
}
