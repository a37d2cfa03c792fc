// Latch pages: forms marked data-action call the JSON API.
// Forms are used even for lone buttons, so that one submit listener handles
// keyboard, mouse and native validation. Served as /assets/latch.js (src/web/assets.ts).
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
      const message =
        error && typeof error.message === "string" ? error.message : "Something went wrong (HTTP " + response.status + "). Try again.";
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

  // A link's token arrives in the fragment (never sent to a server). Keep it
  // in memory and take it out of the address bar, so it is not left in the
  // history or shown over a shoulder; it is sent only on submit.
  let linkToken = "";
  {
    const match = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(location.hash);
    if (match) {
      linkToken = match[1];
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
  function tokenFromLink() {
    if (linkToken === "")
      throw new ApiError("no_token", "This page needs the link from your email. Open the link again, or ask for a new one.");
    return linkToken;
  }

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
    async forgot(form) {
      const login = field(form, "login").trim();
      await api("POST", "/password/forgot", login.includes("@") ? { email: login } : { username: login });
      return "/account/forgot?notice=reset-sent";
    },
    async "reset-password"(form) {
      const newPassword = field(form, "newPassword");
      if (newPassword !== field(form, "confirmPassword")) throw new ApiError("mismatch", "The new passwords do not match.");
      await api("POST", "/password/reset", { token: tokenFromLink(), newPassword });
      return "/account/signin?notice=password-reset";
    },
    async "verify-email"() {
      await api("POST", "/email/verify", { token: tokenFromLink() });
      return "/account/verify-email?notice=email-verified";
    },
    async "send-verification"() {
      await api("POST", "/email/verify/send");
      return withNotice("verification-sent");
    },
    async "change-email"(form) {
      await api("POST", "/me/email", { email: field(form, "email").trim(), password: field(form, "password") });
      return withNotice("email-changed");
    },
    async "set-roles"(form) {
      const roles = field(form, "roles")
        .split(/[\s,]+/)
        .filter((role) => role !== "");
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
