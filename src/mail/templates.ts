import type { MailKind } from "../core/store.js";
import { html } from "../web/html.js";
import type { SafeHtml } from "../web/html.js";

/**
 * Every message Latch sends, in one place: a subject, a plain-text part and
 * an HTML part per kind, short and clear. To change the wording, change it
 * here. The HTML goes through the pages' escaping template, so a username or
 * address chosen by whoever signed up cannot add markup. No message ever
 * holds a password.
 */

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

export interface MailContext {
  /** The account's username, for the greeting. */
  username: string;
  /** PUBLIC_URL, for "sign in at" and the footer. */
  publicUrl: string;
}

const NOT_YOU = "If this was not you, you can ignore this message";

function page(title: string, body: SafeHtml, publicUrl: string): string {
  return html`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title></head>
<body style="font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; line-height: 1.5; color: #1c1f24; max-width: 36rem; margin: 0 auto; padding: 1rem;">
<h1 style="font-size: 1.25rem;">${title}</h1>
${body}
<p style="color: #59606b; font-size: .875rem;">Sent by Latch at ${publicUrl}.</p>
</body>
</html>
`.toString();
}

function button(link: string, label: string): SafeHtml {
  // The link is built by Latch from PUBLIC_URL and a base64url token, never from input.
  return html`<p><a href="${link}" style="display: inline-block; padding: .6rem 1rem; background: #1f5fbf; color: #fff; border-radius: .375rem; text-decoration: none; font-weight: 600;">${label}</a></p>
<p style="font-size: .875rem;">Or copy this address into your browser:<br><span style="word-break: break-all;">${link}</span></p>`;
}

/**
 * The verification message for a new or changed email.
 *
 * @example
 * const mail = verifyEmailMail({ username: "ada", publicUrl }, `${publicUrl}/account/verify-email#token=${token}`);
 */
export function verifyEmailMail(context: MailContext, link: string): RenderedMail {
  const subject = "Confirm your email address";
  const text = `Hello ${context.username},

Please confirm that this is your email address for your Latch account by opening this link:

${link}

The link works once and for 24 hours.

${NOT_YOU}: nothing changes until the link is used.
`;
  const body = html`<p>Hello ${context.username},</p>
<p>Please confirm that this is your email address for your Latch account.</p>
${button(link, "Confirm my email address")}
<p>The link works once and for 24 hours.</p>
<p>${NOT_YOU}: nothing changes until the link is used.</p>`;
  return { subject, text, html: page(subject, body, context.publicUrl) };
}

/** The password-reset message. */
export function passwordResetMail(context: MailContext, link: string): RenderedMail {
  const subject = "Reset your password";
  const text = `Hello ${context.username},

Someone asked to reset the password of your Latch account. To choose a new password, open this link:

${link}

The link works once and for 30 minutes. Resetting signs you out everywhere.

${NOT_YOU}: your password stays as it is.
`;
  const body = html`<p>Hello ${context.username},</p>
<p>Someone asked to reset the password of your Latch account. To choose a new password, use the button below.</p>
${button(link, "Choose a new password")}
<p>The link works once and for 30 minutes. Resetting signs you out everywhere.</p>
<p>${NOT_YOU}: your password stays as it is.</p>`;
  return { subject, text, html: page(subject, body, context.publicUrl) };
}

/** The notice after a password change, by the account page or by a reset. */
export function passwordChangedMail(context: MailContext, options: { at: number; how: "changed" | "reset" }): RenderedMail {
  const subject = "Your password was changed";
  const when = new Date(options.at).toUTCString();
  const how = options.how === "reset" ? "reset with a link sent to this address" : "changed from the account page";
  const signIn = `${context.publicUrl}/account/forgot`;
  const text = `Hello ${context.username},

The password of your Latch account was ${how} on ${when}. Your other sessions were signed out.

If this was not you, reset your password now at ${signIn} and review your sessions on your account page.
`;
  const body = html`<p>Hello ${context.username},</p>
<p>The password of your Latch account was ${how} on ${when}. Your other sessions were signed out.</p>
<p>If this was not you, <a href="${signIn}">reset your password now</a> and review your sessions on your account page.</p>`;
  return { subject, text, html: page(subject, body, context.publicUrl) };
}

/** The notice to the old address after an email change. */
export function emailChangedMail(context: MailContext, options: { at: number; newEmail: string }): RenderedMail {
  const subject = "Your email address was changed";
  const when = new Date(options.at).toUTCString();
  const signIn = `${context.publicUrl}/account/signin`;
  const text = `Hello ${context.username},

The email address of your Latch account was changed on ${when} to ${options.newEmail}. Messages about your account now go there.

If this was not you, sign in at ${signIn}, change your password and set your email back.
`;
  const body = html`<p>Hello ${context.username},</p>
<p>The email address of your Latch account was changed on ${when} to <strong>${options.newEmail}</strong>. Messages about your account now go there.</p>
<p>If this was not you, <a href="${signIn}">sign in</a>, change your password and set your email back.</p>`;
  return { subject, text, html: page(subject, body, context.publicUrl) };
}

/** Every kind, for tests and docs. */
export const MAIL_KINDS: readonly MailKind[] = ["verify_email", "password_reset", "password_changed", "email_changed"];
