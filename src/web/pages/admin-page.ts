import type { FastifyInstance } from "fastify";
import { authenticateCookie } from "../../server/auth.js";
import type { ServerContext } from "../../server/context.js";
import { formatDateTime } from "../device.js";
import { html } from "../html.js";
import type { SafeHtml } from "../html.js";
import { actionForm, layout, sendPage, statusPage } from "./layout.js";
import type { PageViewer } from "./layout.js";
import { isOk, readApi } from "./read-api.js";
import type { ApiUser } from "./read-api.js";

/** Users per page: enough to scan, few enough that the row forms stay quick to tab through. */
const PAGE_SIZE = 25;

interface AdminQuery {
  Querystring: { notice?: string; cursor?: string };
}

function userRow(user: ApiUser, viewerId: string): SafeHtml {
  const rolesId = `roles-${user.id}`;
  return html`<tr>
  <td>${user.username}${user.id === viewerId && html` <span class="badge">you</span>`}</td>
  <td>${user.email ?? html`<span class="muted">none</span>`}</td>
  <td>${user.roles.map((role) => html`<span class="role">${role}</span> `)}</td>
  <td class="nowrap"><time datetime="${user.createdAt}" title="${formatDateTime(Date.parse(user.createdAt))}">${user.createdAt.slice(0, 10)}</time></td>
  <td>${actionForm(
    "set-roles",
    html`<div class="inline-form">
  <label class="visually-hidden" for="${rolesId}">Roles for ${user.username}</label>
  <input type="text" id="${rolesId}" name="roles" value="${user.roles.join(", ")}" autocomplete="off" spellcheck="false" required>
  <button type="submit" class="secondary small">Save<span class="visually-hidden"> roles for ${user.username}</span></button>
</div>`,
    { "user-id": user.id, "error-target": "users-alert" },
  )}</td>
  <td>${actionForm(
    "revoke-user-sessions",
    html`<button type="submit" class="danger small">Sign out<span class="visually-hidden"> ${user.username}</span> everywhere</button>`,
    { "user-id": user.id, "error-target": "users-alert", confirm: `Sign ${user.username} out of every session?` },
  )}</td>
  <td>${
    !user.mfa
      ? html`<span class="muted">none</span>`
      : actionForm(
          "reset-user-mfa",
          html`<span class="badge">On</span> <button type="submit" class="danger small">Remove<span class="visually-hidden"> ${user.username}'s second factors</span></button>`,
          {
            "user-id": user.id,
            "error-target": "users-alert",
            confirm: `Remove ${user.username}'s authenticator app, recovery codes and passkeys, and sign them out everywhere? Do this only for someone who lost their device and proved who they are.`,
          },
        )
  }</td>
</tr>`;
}

function adminPage(viewer: PageViewer, users: ApiUser[], cursor: string | undefined, nextCursor: string | null): SafeHtml {
  const pager = [
    cursor !== undefined && html`<a href="/account/admin">First page</a>`,
    nextCursor !== null && html`<a href="/account/admin?cursor=${encodeURIComponent(nextCursor)}" rel="next">Next page</a>`,
  ];
  return html`<h1>Administration</h1>
<section class="card" aria-labelledby="users-heading">
<h2 id="users-heading">Users</h2>
<p class="muted">Roles are a comma-separated list; <span class="role">user</span> is always kept. Role changes apply to a user's live sessions on their next request.</p>
<p class="alert" role="alert" id="users-alert" hidden></p>
<div class="table-wrap">
<table class="users">
  <thead><tr><th scope="col">Username</th><th scope="col">Email</th><th scope="col">Roles</th><th scope="col">Created</th><th scope="col">Set roles</th><th scope="col">Sessions</th><th scope="col">Second factors</th></tr></thead>
  <tbody>
${users.length === 0 ? html`<tr><td colspan="7" class="muted">No users on this page.</td></tr>` : users.map((user) => userRow(user, viewer.user.id))}
  </tbody>
</table>
</div>
${(cursor !== undefined || nextCursor !== null) && html`<nav class="pager" aria-label="Pages of users">${pager}</nav>`}
</section>`;
}

/**
 * GET /account/admin: the users (paged with the API's cursor), a roles form
 * and a force sign-out button for each. Without a session: 302 to sign-in;
 * signed in without the admin role: a 403 page.
 *
 * @example
 * adminPages(app, ctx);
 */
export function adminPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get<AdminQuery>("/account/admin", async (request, reply) => {
    const auth = await authenticateCookie(ctx, request, reply);
    if (auth === null) return reply.redirect("/account/signin", 302);
    const viewer: PageViewer = { user: auth.user, csrfToken: ctx.sessions.csrfToken(auth.cookie!) };
    if (!auth.user.roles.includes("admin")) {
      return sendPage(reply, 403, statusPage({ title: "Not allowed", message: "This page is for administrators.", viewer }));
    }
    const cursor = typeof request.query.cursor === "string" && request.query.cursor !== "" ? request.query.cursor : undefined;
    const query = new URLSearchParams({ limit: String(PAGE_SIZE), ...(cursor === undefined ? {} : { cursor }) });
    const answer = await readApi<{ users: ApiUser[]; nextCursor: string | null }>(app, request, `/admin/users?${query.toString()}`);
    if (answer.status === 401) return reply.redirect("/account/signin", 302);
    if (!isOk(answer)) {
      // A tampered cursor (400) or a role removed between the two reads (403): say so, in the API's words.
      const message = "error" in answer.body ? answer.body.error.message : "The users could not be loaded.";
      return sendPage(reply, answer.status, statusPage({ title: "Could not list users", message, viewer }));
    }
    const page = adminPage(viewer, answer.body.users, cursor, answer.body.nextCursor);
    return sendPage(reply, 200, layout({ title: "Administration", viewer, notice: request.query.notice, width: "wide" }, page));
  });
}
