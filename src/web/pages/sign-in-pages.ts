import type { FastifyInstance } from "fastify";
import { authenticateCookie } from "../../server/auth.js";
import type { ServerContext } from "../../server/context.js";
import { html } from "../html.js";
import { actionForm, formError, layout, sendPage } from "./layout.js";

interface NoticeQuery {
  Querystring: { notice?: string };
}

/**
 * GET / (to the account page or to sign-in), GET /account/signin and GET
 * /account/signup. A visitor who is already signed in is sent on to their
 * account rather than shown a form that would start a second session.
 *
 * @example
 * signInPages(app, ctx);
 */
export function signInPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get("/", async (request, reply) => {
    const auth = await authenticateCookie(ctx, request, reply);
    return reply.redirect(auth === null ? "/account/signin" : "/account", 302);
  });

  app.get<NoticeQuery>("/account/signin", async (request, reply) => {
    if ((await authenticateCookie(ctx, request, reply)) !== null) return reply.redirect("/account", 302);
    const form = actionForm(
      "signin",
      html`${formError()}
<div class="field">
  <label for="signin-username">Username or email</label>
  <input type="text" id="signin-username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="320" autofocus>
</div>
<div class="field">
  <label for="signin-password">Password</label>
  <input type="password" id="signin-password" name="password" autocomplete="current-password" required maxlength="256">
</div>
<div class="actions"><button type="submit">Sign in</button><a href="/account/forgot">Forgot your password?</a></div>`,
    );
    // After a right password, for an account with TOTP: the second step, on the same page.
    const codeStep = html`<div id="code-step" hidden>
<h2>Enter your code</h2>
<p>Open your authenticator app and enter the 6-digit code for Latch. Lost your device? Enter one of your recovery codes instead.</p>
${actionForm(
  "signin-code",
  html`${formError()}
<div class="field">
  <label for="signin-code">Code</label>
  <input type="text" class="code" id="signin-code" name="code" inputmode="numeric" autocomplete="one-time-code" autocapitalize="none" spellcheck="false" required maxlength="64">
</div>
<div class="actions"><button type="submit">Verify</button> <a href="/account/signin">Start again</a></div>`,
)}
</div>`;
    const passkey = html`<div data-hide-with-code-step>
<p class="divider">or</p>
${actionForm("passkey-signin", html`${formError()}<button type="submit" class="secondary">Sign in with a passkey</button>`)}
</div>`;
    return sendPage(
      reply,
      200,
      layout(
        { title: "Sign in", width: "narrow", notice: request.query.notice, passkeys: true },
        html`<div class="card">
<h1>Sign in</h1>
${form}
${codeStep}
${passkey}
</div>
<p>New here? <a href="/account/signup">Create an account</a></p>`,
      ),
    );
  });

  app.get("/account/signup", async (request, reply) => {
    if ((await authenticateCookie(ctx, request, reply)) !== null) return reply.redirect("/account", 302);
    const form = actionForm(
      "signup",
      html`${formError()}
<div class="field">
  <label for="signup-username">Username</label>
  <span class="hint" id="signup-username-hint">3 to 64 letters, digits, dots, underscores or hyphens.</span>
  <input type="text" id="signup-username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required minlength="3" maxlength="64" aria-describedby="signup-username-hint" autofocus>
</div>
<div class="field">
  <label for="signup-email">Email (optional)</label>
  <span class="hint" id="signup-email-hint">You can sign in with it too.</span>
  <input type="email" id="signup-email" name="email" autocomplete="email" maxlength="320" aria-describedby="signup-email-hint">
</div>
<div class="field">
  <label for="signup-password">Password</label>
  <span class="hint" id="signup-password-hint">At least 8 characters; not a common password or your username.</span>
  <input type="password" id="signup-password" name="password" autocomplete="new-password" required minlength="8" maxlength="256" aria-describedby="signup-password-hint">
</div>
<div class="actions"><button type="submit">Create account</button></div>`,
    );
    return sendPage(
      reply,
      200,
      layout(
        { title: "Create an account", width: "narrow" },
        html`<div class="card">
<h1>Create an account</h1>
${form}
</div>
<p>Already have an account? <a href="/account/signin">Sign in</a></p>`,
      ),
    );
  });
}
