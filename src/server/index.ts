export { buildServer } from "./app.js";
export type { BuildServerOptions, LatchServer } from "./app.js";
export type { ServerContext } from "./context.js";
