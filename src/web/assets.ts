import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";

/**
 * The pages' one script and one stylesheet, kept as constants so the server
 * needs no static-file plugin and no files beside the build. The pages carry
 * no inline script or style, which is what lets their CSP be `'self'` only.
 */

/**
 * Turns every `<form data-action="…">` into a call to the JSON API: fetch
 * with the session cookie and the CSRF token from `<meta name="csrf-token">`,
 * then a navigation on success, or the API's `error.message` in the form's
 * `role="alert"` element on failure. Forms are used even for lone buttons so
 * that one submit listener handles keyboard, mouse and native validation.
 */
export const LATCH_JS = String.raw`// Latch pages: forms marked data-action call the JSON API.
(() => {
  "use strict";

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');

  class ApiError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (csrfMeta) headers["X-CSRF-Token"] = csrfMeta.content;
    let response;
    try {
      response = await fetch(path, {
        method,
        credentials: "same-origin",
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError("network", "Could not reach the server. Check your connection and try again.");
    }
    let data = null;
    try {
      const text = await response.text();
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = data && typeof data === "object" ? data.error : null;
      const message = error && typeof error.message === "string" ? error.message : "Something went wrong (HTTP " + response.status + "). Try again.";
      throw new ApiError(error && typeof error.code === "string" ? error.code : "http_" + response.status, message);
    }
    return data;
  }

  function field(form, name) {
    const input = form.elements.namedItem(name);
    return input && typeof input.value === "string" ? input.value : "";
  }

  // Reload the current page (keeping its query, such as an admin page cursor) with a notice.
  function withNotice(notice) {
    const url = new URL(location.href);
    url.searchParams.set("notice", notice);
    return url.pathname + url.search;
  }

  const SIGNED_OUT = "/account/signin?notice=signed-out";

  // Each action calls the API and returns where to go next.
  const actions = {
    async signin(form) {
      // The API takes an email in the username field too.
      await api("POST", "/login", { username: field(form, "username").trim(), password: field(form, "password") });
      return "/account";
    },
    async signup(form) {
      const body = { username: field(form, "username").trim(), password: field(form, "password") };
      const email = field(form, "email").trim();
      if (email !== "") body.email = email;
      await api("POST", "/register", body);
      return "/account";
    },
    async signout() {
      await api("POST", "/logout");
      return SIGNED_OUT;
    },
    async "revoke-session"(form) {
      await api("DELETE", "/sessions/" + encodeURIComponent(form.dataset.sessionId || ""));
      return form.dataset.current === "true" ? SIGNED_OUT : withNotice("session-signed-out");
    },
    async "revoke-others"() {
      await api("POST", "/sessions/revoke-others");
      return withNotice("others-signed-out");
    },
    async "change-password"(form) {
      const newPassword = field(form, "newPassword");
      if (newPassword !== field(form, "confirmPassword")) throw new ApiError("mismatch", "The new passwords do not match.");
      await api("POST", "/password", { currentPassword: field(form, "currentPassword"), newPassword });
      return withNotice("password-changed");
    },
    async "delete-account"(form) {
      await api("DELETE", "/me", { password: field(form, "password") });
      return "/account/signin?notice=account-deleted";
    },
    async "set-roles"(form) {
      const roles = field(form, "roles").split(/[\s,]+/).filter((role) => role !== "");
      await api("PATCH", "/admin/users/" + encodeURIComponent(form.dataset.userId || ""), { roles });
      return withNotice("roles-saved");
    },
    async "revoke-user-sessions"(form) {
      await api("POST", "/admin/users/" + encodeURIComponent(form.dataset.userId || "") + "/revoke-sessions");
      return withNotice("user-signed-out");
    },
  };

  // A form's own alert, else the one its data-error-target names (forms in
  // table rows share one), else the page's.
  function alertFor(form) {
    return (
      form.querySelector("[data-error]") ||
      (form.dataset.errorTarget && document.getElementById(form.dataset.errorTarget)) ||
      document.getElementById("page-alert")
    );
  }

  function setBusy(form, busy) {
    for (const button of form.querySelectorAll("button")) button.disabled = busy;
    if (busy) form.setAttribute("aria-busy", "true");
    else form.removeAttribute("aria-busy");
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const name = form.dataset.action;
    if (name === undefined || !Object.hasOwn(actions, name)) return;
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const alert = alertFor(form);
    if (alert) {
      alert.hidden = true;
      alert.textContent = "";
    }
    setBusy(form, true);
    try {
      // Buttons stay disabled on success: the page is being replaced.
      location.assign(await actions[name](form));
    } catch (error) {
      setBusy(form, false);
      // A session that ended elsewhere: the sign-in page is the only useful place.
      if (error instanceof ApiError && error.code === "unauthenticated" && csrfMeta) {
        location.assign("/account/signin");
        return;
      }
      const message = error instanceof ApiError ? error.message : "Something went wrong. Try again.";
      if (alert) {
        alert.textContent = message;
        alert.hidden = false;
      } else {
        window.alert(message);
      }
    }
  });
})();
`;

/** Readable, accessible defaults: system fonts, visible focus, high-contrast text, no layout surprises. */
export const LATCH_CSS = `/* Latch pages */
:root {
  --text: #1c1f24;
  --muted: #59606b;
  --bg: #f5f6f8;
  --card: #ffffff;
  --line: #d9dde3;
  --accent: #1f5fbf;
  --accent-dark: #174a96;
  --danger: #b3261e;
  --danger-bg: #fdecea;
  --ok-bg: #e7f4ea;
  --ok: #1e6b34;
  --focus: #f2a900;
  color-scheme: light;
}
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
html { font-size: 100%; }
body {
  margin: 0;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  line-height: 1.5;
  color: var(--text);
  background: var(--bg);
}
a { color: var(--accent); }
a:hover { color: var(--accent-dark); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip-link { position: absolute; left: -999px; top: 0; background: var(--card); padding: .5rem 1rem; z-index: 10; }
.skip-link:focus { left: 1rem; }
.visually-hidden {
  position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
.site-header {
  display: flex; flex-wrap: wrap; align-items: center; justify-content: space-between; gap: .75rem;
  padding: .75rem 1.5rem; background: var(--card); border-bottom: 1px solid var(--line);
}
.brand { font-weight: 700; font-size: 1.25rem; text-decoration: none; color: var(--text); }
.site-header nav { display: flex; flex-wrap: wrap; align-items: center; gap: 1rem; }
.site-header nav form { margin: 0; }
main { max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
main.narrow { max-width: 28rem; }
main.wide { max-width: 76rem; }
h1 { font-size: 1.75rem; margin: 0 0 1rem; }
h2 { font-size: 1.25rem; margin: 0 0 .75rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: 1.25rem 1.5rem; margin-bottom: 1.5rem; }
.card > :last-child { margin-bottom: 0; }
.card.danger { border-color: #e8b4b0; }
.muted { color: var(--muted); }
dl.profile { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1.5rem; margin: 0; }
dl.profile dt { font-weight: 600; }
dl.profile dd { margin: 0; overflow-wrap: anywhere; }
.role { display: inline-block; padding: 0 .5rem; margin-right: .25rem; border-radius: 1rem; background: #e8eefb; color: var(--accent-dark); font-size: .875rem; }
label { display: block; font-weight: 600; margin-bottom: .25rem; }
.hint { display: block; font-weight: 400; color: var(--muted); font-size: .875rem; margin-bottom: .35rem; }
input[type="text"], input[type="email"], input[type="password"] {
  display: block; width: 100%; padding: .55rem .7rem; font: inherit; color: inherit;
  background: #fff; border: 1px solid #8a929e; border-radius: .375rem;
}
input:focus-visible { border-color: var(--accent); }
.field { margin-bottom: 1rem; }
button {
  font: inherit; font-weight: 600; cursor: pointer; padding: .5rem 1rem; border-radius: .375rem;
  border: 1px solid var(--accent); background: var(--accent); color: #fff;
}
button { white-space: nowrap; }
button:hover { background: var(--accent-dark); border-color: var(--accent-dark); }
button:disabled { opacity: .6; cursor: progress; }
button.secondary { background: #fff; color: var(--accent-dark); }
button.secondary:hover { background: #eef3fc; }
button.danger { background: var(--danger); border-color: var(--danger); color: #fff; }
button.danger:hover { background: #8f1e18; }
button.small { padding: .25rem .6rem; font-size: .875rem; }
.actions { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin-top: 1rem; }
.actions form { margin: 0; }
.alert { padding: .6rem .8rem; border-radius: .375rem; background: var(--danger-bg); color: var(--danger); border: 1px solid #e8b4b0; margin: 0 0 1rem; }
.notice { padding: .6rem .8rem; border-radius: .375rem; background: var(--ok-bg); color: var(--ok); border: 1px solid #b5dcc0; margin: 0 0 1.5rem; }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
caption { text-align: left; font-weight: 600; padding-bottom: .5rem; }
th, td { text-align: left; padding: .55rem .5rem; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: .875rem; color: var(--muted); font-weight: 600; }
td form { margin: 0; }
.badge { display: inline-block; margin-left: .35rem; padding: 0 .5rem; border-radius: 1rem; background: var(--ok-bg); color: var(--ok); font-size: .8rem; font-weight: 600; }
.inline-form { display: flex; gap: .5rem; align-items: center; }
.inline-form input { min-width: 10rem; }
.nowrap { white-space: nowrap; }
.card.danger input { max-width: 24rem; }
.pager { display: flex; gap: 1rem; margin-top: 1rem; }
.grid-2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1.5rem; align-items: start; }
.grid-2 > .card { margin-bottom: 0; }
.grid-2 { margin-bottom: 1.5rem; }
@media (max-width: 40rem) {
  .site-header { padding: .75rem 1rem; }
  main { margin: 1rem auto; }
  .card { padding: 1rem; }
  /* A phone has no room for four columns: each session becomes a block,
     its times labelled from the cells' data-label (the header row stays for
     screen readers). */
  table.sessions thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table.sessions, table.sessions tbody, table.sessions tr, table.sessions td { display: block; width: 100%; }
  table.sessions tr { padding: .5rem 0; border-bottom: 1px solid var(--line); }
  table.sessions td { padding: .15rem 0; border: 0; }
  table.sessions td[data-label]::before { content: attr(data-label) " "; color: var(--muted); font-size: .875rem; font-weight: 600; }
}
`;

/** A padlock, linked as the icon so browsers do not ask for a missing /favicon.ico. */
export const LATCH_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="5" y="14" width="22" height="16" rx="3" fill="#1f5fbf"/><path d="M10 14V10a6 6 0 0 1 12 0v4" fill="none" stroke="#1f5fbf" stroke-width="3"/><circle cx="16" cy="21" r="2.5" fill="#fff"/></svg>
`;

function version(text: string): string {
  return createHash("sha256").update(text).digest("base64url").slice(0, 12);
}

/**
 * Asset URLs with a content hash, so the year-long cache below can never
 * serve a stale script after an upgrade: a new build links a new URL.
 */
export const assetUrls: { readonly script: string; readonly stylesheet: string; readonly icon: string } = {
  script: `/assets/latch.js?v=${version(LATCH_JS)}`,
  stylesheet: `/assets/latch.css?v=${version(LATCH_CSS)}`,
  icon: `/assets/latch.svg?v=${version(LATCH_ICON)}`,
};

const LONG_CACHE = "public, max-age=31536000, immutable";

/**
 * GET /assets/latch.js, /assets/latch.css and /assets/latch.svg.
 *
 * @example
 * assetRoutes(app);
 */
export function assetRoutes(app: FastifyInstance): void {
  app.get("/assets/latch.js", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("text/javascript; charset=utf-8").send(LATCH_JS);
  });
  app.get("/assets/latch.css", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("text/css; charset=utf-8").send(LATCH_CSS);
  });
  app.get("/assets/latch.svg", async (_request, reply) => {
    return reply.header("cache-control", LONG_CACHE).type("image/svg+xml").send(LATCH_ICON);
  });
}
