export { createPostgresStores } from "./postgres-store.js";
export type { PostgresStoreOptions, PostgresStores } from "./postgres-store.js";
export { migrate, migrations } from "./migrations.js";
export type { Migration } from "./migrations.js";
export { createPostgresRevocationChannel, listenForRevocations, revocationChannelSql } from "./revocations.js";
export type { ListenOptions, PostgresRevocationEvent, RevocationListener } from "./revocations.js";
