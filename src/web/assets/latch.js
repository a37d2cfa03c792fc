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

  // @simplewebauthn/browser, served as /assets/simplewebauthn-browser.js on the pages that use passkeys.
  function webauthn() {
    const lib = window.SimpleWebAuthnBrowser;
    if (!lib?.browserSupportsWebAuthn()) throw new ApiError("unsupported", "This browser does not support passkeys.");
    return lib;
  }

  // A browser's WebAuthn refusal (cancelled, timed out, no passkey) as a message for the form.
  function ceremonyError(error) {
    if (error instanceof ApiError) return error;
    const name = error?.name;
    if (name === "NotAllowedError") return new ApiError("cancelled", "The passkey request was cancelled or timed out. Try again.");
    if (name === "InvalidStateError") return new ApiError("exists", "This device already holds a passkey for your account.");
    return new ApiError("webauthn", "The passkey could not be used" + (error?.message ? ": " + error.message : "."));
  }

  // Recovery codes are shown once, as text, with a copy button; the page then waits for "Done".
  function showRecoveryCodes(codes) {
    const panel = document.getElementById("recovery-codes");
    const list = panel?.querySelector("ol");
    if (!panel || !list) return;
    list.replaceChildren(
      ...codes.map((code) => {
        const item = document.createElement("li");
        const text = document.createElement("code");
        text.textContent = code;
        item.append(text);
        return item;
      }),
    );
    panel.dataset.codes = codes.join("\n");
    for (const hide of document.querySelectorAll("[data-hide-with-codes]")) hide.hidden = true;
    panel.hidden = false;
    panel.querySelector("h2, h3")?.focus();
  }

  document.addEventListener("click", async (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-copy-codes]") : null;
    if (!button) return;
    const panel = document.getElementById("recovery-codes");
    try {
      await navigator.clipboard.writeText(panel ? panel.dataset.codes || "" : "");
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed: select the codes instead";
    }
  });
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
      const answer = await api("POST", "/login", { username: field(form, "username").trim(), password: field(form, "password") });
      if (answer?.mfaRequired) {
        // The account has TOTP: the same page asks for the code.
        const step = document.getElementById("code-step");
        if (step) {
          form.hidden = true;
          for (const other of document.querySelectorAll("[data-hide-with-code-step]")) other.hidden = true;
          step.hidden = false;
          step.querySelector("input")?.focus();
          return null;
        }
      }
      return "/account";
    },
    async "signin-code"(form) {
      const value = field(form, "code").trim();
      // Six digits are a TOTP code; anything else is tried as a recovery code.
      const body = /^\d{6}$/.test(value.replace(/\s/g, "")) ? { code: value.replace(/\s/g, "") } : { recoveryCode: value };
      try {
        await api("POST", "/login/mfa", body);
      } catch (error) {
        // The pending sign-in ended (5 wrong codes or 5 minutes): start again.
        if (error instanceof ApiError && error.code === "unauthenticated") return "/account/signin?notice=code-step-expired";
        throw error;
      }
      return "/account";
    },
    async "passkey-signin"() {
      const lib = webauthn();
      const { options } = await api("POST", "/passkeys/login/options");
      let response;
      try {
        response = await lib.startAuthentication({ optionsJSON: options });
      } catch (error) {
        throw ceremonyError(error);
      }
      await api("POST", "/passkeys/login", { response });
      return "/account";
    },
    async "passkey-add"(form) {
      const lib = webauthn();
      const { options } = await api("POST", "/passkeys/register/options");
      let response;
      try {
        response = await lib.startRegistration({ optionsJSON: options });
      } catch (error) {
        throw ceremonyError(error);
      }
      const name = field(form, "name").trim();
      await api("POST", "/passkeys/register", name === "" ? { response } : { response, name });
      return withNotice("passkey-added");
    },
    async "passkey-rename"(form) {
      await api("PATCH", "/passkeys/" + encodeURIComponent(form.dataset.passkeyId || ""), { name: field(form, "name").trim() });
      return withNotice("passkey-renamed");
    },
    async "passkey-remove"(form) {
      await api("DELETE", "/passkeys/" + encodeURIComponent(form.dataset.passkeyId || ""));
      return withNotice("passkey-removed");
    },
    async "totp-begin"() {
      await api("POST", "/mfa/totp");
      return "/account/totp";
    },
    async "totp-confirm"(form) {
      const { recoveryCodes } = await api("POST", "/mfa/totp/confirm", { code: field(form, "code").replace(/\s/g, "") });
      showRecoveryCodes(recoveryCodes);
      return null;
    },
    async "totp-disable"(form) {
      await api("DELETE", "/mfa/totp", { password: field(form, "password") });
      return withNotice("totp-disabled");
    },
    async "recovery-codes"(form) {
      const { recoveryCodes } = await api("POST", "/mfa/recovery-codes", { password: field(form, "password") });
      showRecoveryCodes(recoveryCodes);
      form.reset();
      return null;
    },
    async "reset-user-mfa"(form) {
      await api("DELETE", "/admin/users/" + encodeURIComponent(form.dataset.userId || "") + "/mfa");
      return withNotice("user-mfa-removed");
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
      // An action that stays on the page (the code step, recovery codes) answers null.
      const next = await actions[name](form);
      if (next === null) setBusy(form, false);
      else location.assign(next);
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
