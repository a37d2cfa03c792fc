import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../server/context.js";
import { assetRoutes } from "./assets.js";
import { accountPages } from "./pages/account-page.js";
import { adminPages } from "./pages/admin-page.js";
import { secondFactorPages } from "./pages/second-factor-pages.js";
import { recoveryPages } from "./pages/recovery-pages.js";
import { signInPages } from "./pages/sign-in-pages.js";

/**
 * The server-rendered pages (`/`, `/account/signin`, `/account/signup`,
 * `/account`, `/account/admin`, `/account/forgot`, `/account/reset`,
 * `/account/verify-email`) and their script and stylesheet under
 * `/assets/`. The pages only read; every change goes through the JSON API
 * from `/assets/latch.js`, so the API stays the one place that enforces
 * sessions, CSRF and roles.
 *
 * @example
 * webRoutes(app, context);
 */
export function webRoutes(app: FastifyInstance, ctx: ServerContext): void {
  assetRoutes(app);
  signInPages(app, ctx);
  accountPages(app, ctx);
  adminPages(app, ctx);
  secondFactorPages(app, ctx);
  recoveryPages(app, ctx);
}
