import type { FastifyInstance } from "fastify";
import { authenticateCookie } from "../../server/auth.js";
import type { ServerContext } from "../../server/context.js";
import { describeUserAgent, formatDateTime, timeAgo } from "../device.js";
import { html } from "../html.js";
import type { SafeHtml } from "../html.js";
import { actionForm, formError, layout, sendPage, statusPage } from "./layout.js";
import type { PageViewer } from "./layout.js";
import { isOk, readApi } from "./read-api.js";
import { secondFactorSections } from "./second-factor-pages.js";
import type { ApiPasskey, ApiSecondFactors } from "./second-factor-pages.js";
import type { ApiSession } from "./read-api.js";

interface NoticeQuery {
  Querystring: { notice?: string };
}

function sessionRow(session: ApiSession, now: number): SafeHtml {
  const device = describeUserAgent(session.userAgent);
  const lastSeen = Date.parse(session.lastSeenAt);
  const signedIn = Date.parse(session.createdAt);
  // The full user agent is in the title for the curious; it is as hostile as
  // any other client input, and the template escapes it in the attribute too.
  return html`<tr${session.current && html` class="current"`}>
  <td><span title="${session.userAgent ?? ""}">${device}</span>${session.current && html`<span class="badge">This device</span>`}</td>
  <td class="nowrap" data-label="Signed in"><time datetime="${session.createdAt}">${formatDateTime(signedIn)}</time></td>
  <td class="nowrap" data-label="Last seen"><time datetime="${session.lastSeenAt}" title="${formatDateTime(lastSeen)}">${timeAgo(lastSeen, now)}</time></td>
  <td>${actionForm(
    "revoke-session",
    html`<button type="submit" class="secondary small">Sign out<span class="visually-hidden"> ${session.current ? "this device" : `${device}, last seen ${timeAgo(lastSeen, now)}`}</span></button>`,
    { "session-id": session.id, current: String(session.current), "error-target": "sessions-alert" },
  )}</td>
</tr>`;
}

function accountPage(viewer: PageViewer, sessions: ApiSession[], now: number, factors: SafeHtml): SafeHtml {
  const { user } = viewer;
  const isAdmin = user.roles.includes("admin");
  // This device first, then the most recently used.
  const ordered = [...sessions].sort(
    (a, b) => Number(b.current) - Number(a.current) || Date.parse(b.lastSeenAt) - Date.parse(a.lastSeenAt),
  );
  return html`<h1>Your account</h1>

<section class="card" aria-labelledby="profile-heading">
<h2 id="profile-heading">Profile</h2>
<dl class="profile">
  <dt>Username</dt><dd data-field="username">${user.username}</dd>
  <dt>Email</dt><dd><span data-field="email">${user.email ?? html`<span class="muted">none</span>`}</span>${user.email !== null && (user.emailVerified ? html`<span class="badge" data-field="email-verified">Verified</span>` : html`<span class="badge unverified" data-field="email-verified">Not verified</span>`)}</dd>
  <dt>Roles</dt><dd data-field="roles">${user.roles.map((role) => html`<span class="role">${role}</span>`)}</dd>
  <dt>Member since</dt><dd><time datetime="${new Date(user.createdAt).toISOString()}">${formatDateTime(user.createdAt)}</time></dd>
</dl>
${
  user.email !== null &&
  !user.emailVerified &&
  actionForm(
    "send-verification",
    html`${formError()}<p class="muted">We sent a link to your email address. Did not get it?</p><div class="actions"><button type="submit" class="secondary">Send the verification message again</button></div>`,
  )
}
${isAdmin && html`<p><a href="/account/admin">Go to the admin area</a>: users, roles and force sign-out.</p>`}
</section>

<section class="card" aria-labelledby="email-heading">
<h2 id="email-heading">${user.email === null ? "Add an email address" : "Change email address"}</h2>
${actionForm(
  "change-email",
  html`${formError()}
<div class="field">
  <label for="change-email">New email address</label>
  <span class="hint" id="change-email-hint">We send a link to verify it${user.email !== null ? " and a notice to the old address" : ""}.</span>
  <input type="email" id="change-email" name="email" autocomplete="email" required maxlength="320" aria-describedby="change-email-hint">
</div>
<div class="field">
  <label for="change-email-password">Password, to confirm the change</label>
  <input type="password" id="change-email-password" name="password" autocomplete="current-password" required maxlength="256">
</div>
<div class="actions"><button type="submit">${user.email === null ? "Add email address" : "Change email address"}</button></div>`,
)}
</section>

<section class="card" aria-labelledby="sessions-heading">
<h2 id="sessions-heading">Where you are signed in</h2>
<p class="muted">Sign out of any session you do not recognise, then change your password.</p>
<p class="alert" role="alert" id="sessions-alert" hidden></p>
<div class="table-wrap">
<table class="sessions">
  <thead><tr><th scope="col">Device</th><th scope="col">Signed in</th><th scope="col">Last seen</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>
${ordered.map((session) => sessionRow(session, now))}
  </tbody>
</table>
</div>
<div class="actions">
  ${actionForm("revoke-others", html`<button type="submit" class="secondary">Sign out of every other session</button>`, { "error-target": "sessions-alert" })}
  ${actionForm("signout", html`<button type="submit" class="secondary">Sign out</button>`, { "error-target": "sessions-alert" })}
</div>
</section>

${factors}

<div class="grid-2">
<section class="card" aria-labelledby="password-heading">
<h2 id="password-heading">Change password</h2>
${actionForm(
  "change-password",
  html`${formError()}
<div class="field">
  <label for="current-password">Current password</label>
  <input type="password" id="current-password" name="currentPassword" autocomplete="current-password" required maxlength="256">
</div>
<div class="field">
  <label for="new-password">New password</label>
  <span class="hint" id="new-password-hint">At least 8 characters. Every other session will be signed out.</span>
  <input type="password" id="new-password" name="newPassword" autocomplete="new-password" required minlength="8" maxlength="256" aria-describedby="new-password-hint">
</div>
<div class="field">
  <label for="confirm-password">Repeat the new password</label>
  <input type="password" id="confirm-password" name="confirmPassword" autocomplete="new-password" required minlength="8" maxlength="256">
</div>
<div class="actions"><button type="submit">Change password</button></div>`,
)}
</section>

<section class="card" aria-labelledby="data-heading">
<h2 id="data-heading">Your data</h2>
<p>Download everything Latch stores about you: your profile, your sessions and your account's security events, as JSON.</p>
<p><a href="/me/export" download="latch-export.json">Download my data</a></p>
</section>
</div>

<section class="card danger" aria-labelledby="delete-heading">
<h2 id="delete-heading">Delete account</h2>
<p>This erases your account, every session and your security history. It cannot be undone.</p>
${actionForm(
  "delete-account",
  html`${formError()}
<div class="field">
  <label for="delete-password">Your password, to confirm</label>
  <input type="password" id="delete-password" name="password" autocomplete="current-password" required maxlength="256">
</div>
<div class="actions"><button type="submit" class="danger">Delete my account</button></div>`,
  { confirm: "Delete your account and everything stored about it? This cannot be undone." },
)}
</section>`;
}

/**
 * GET /account: who is signed in, their sessions, and the buttons and forms
 * for signing out, changing the password, exporting and deleting the account.
 * Without a valid session: 302 to /account/signin.
 *
 * @example
 * accountPages(app, ctx);
 */
export function accountPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get<NoticeQuery>("/account", async (request, reply) => {
    const auth = await authenticateCookie(ctx, request, reply);
    if (auth === null) return reply.redirect("/account/signin", 302);
    const viewer: PageViewer = { user: auth.user, csrfToken: ctx.sessions.csrfToken(auth.cookie!) };
    const answer = await readApi<{ sessions: ApiSession[] }>(app, request, "/sessions");
    // The session can end between the two reads (revoked from another device).
    if (answer.status === 401) return reply.redirect("/account/signin", 302);
    if (!isOk(answer)) {
      return sendPage(
        reply,
        answer.status,
        statusPage({ title: "Something went wrong", message: "Your sessions could not be loaded. Try again in a moment.", viewer }),
      );
    }
    const [factors, passkeys] = await Promise.all([
      readApi<ApiSecondFactors>(app, request, "/mfa"),
      readApi<{ passkeys: ApiPasskey[] }>(app, request, "/passkeys"),
    ]);
    if (!isOk(factors) || !isOk(passkeys)) {
      return sendPage(
        reply,
        503,
        statusPage({ title: "Something went wrong", message: "Your second factors could not be loaded. Try again in a moment.", viewer }),
      );
    }
    const now = ctx.runtime.clock.now();
    const page = accountPage(viewer, answer.body.sessions, now, secondFactorSections(factors.body, passkeys.body.passkeys, now));
    return sendPage(reply, 200, layout({ title: "Your account", viewer, notice: request.query.notice, passkeys: true }, page));
  });
}
