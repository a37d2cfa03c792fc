import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../../server/context.js";
import { html } from "../html.js";
import type { SafeHtml } from "../html.js";
import { actionForm, formError, layout, sendPage } from "./layout.js";

interface NoticeQuery {
  Querystring: { notice?: string };
}

function narrow(title: string, notice: unknown, content: SafeHtml): SafeHtml {
  return layout(
    { title, width: "narrow", notice },
    html`<div class="card">
<h1>${title}</h1>
${content}
</div>
<p><a href="/account/signin">Back to sign in</a></p>`,
  );
}

const newPasswordFields = html`<div class="field">
  <label for="reset-password">New password</label>
  <span class="hint" id="reset-password-hint">At least 8 characters; not a common password or your username. Every session will be signed out.</span>
  <input type="password" id="reset-password" name="newPassword" autocomplete="new-password" required minlength="8" maxlength="256" aria-describedby="reset-password-hint" autofocus>
</div>
<div class="field">
  <label for="reset-confirm">Repeat the new password</label>
  <input type="password" id="reset-confirm" name="confirmPassword" autocomplete="new-password" required minlength="8" maxlength="256">
</div>`;

/**
 * GET /account/forgot, /account/reset and /account/verify-email. The last
 * two are opened from links whose token is in the fragment: the page script
 * reads it there (the server never sees it), takes it out of the address
 * bar, and sends it only when the person submits the form, so a mail
 * scanner or a prefetch that opens the link consumes nothing.
 *
 * @example
 * recoveryPages(app, ctx);
 */
export function recoveryPages(app: FastifyInstance, _ctx: ServerContext): void {
  app.get<NoticeQuery>("/account/forgot", async (request, reply) => {
    const form = actionForm(
      "forgot",
      html`${formError()}
<p>Enter your username or email. If the account has an email address, we send a link to choose a new password.</p>
<div class="field">
  <label for="forgot-login">Username or email</label>
  <input type="text" id="forgot-login" name="login" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="320" autofocus>
</div>
<div class="actions"><button type="submit">Send the link</button></div>`,
    );
    return sendPage(reply, 200, narrow("Forgot your password?", request.query.notice, form));
  });

  app.get<NoticeQuery>("/account/reset", async (request, reply) => {
    const form = actionForm(
      "reset-password",
      html`${formError()}
${newPasswordFields}
<div class="actions"><button type="submit">Set the new password</button></div>`,
      { "needs-token": "true" },
    );
    return sendPage(reply, 200, narrow("Choose a new password", request.query.notice, form));
  });

  app.get<NoticeQuery>("/account/verify-email", async (request, reply) => {
    const verified = request.query.notice === "email-verified";
    const content = verified
      ? html`<p><a href="/account">Go to your account</a></p>`
      : actionForm(
          "verify-email",
          html`${formError()}
<p>Confirm that this email address is yours.</p>
<div class="actions"><button type="submit">Confirm my email address</button></div>`,
          { "needs-token": "true" },
        );
    return sendPage(reply, 200, narrow("Confirm your email address", request.query.notice, content));
  });
}
