import { writeFileSync } from "node:fs";
import { API_TYPES_PATH, generateApiTypes } from "./api-types.js";

// npm run api-types: regenerate src/client/api-types.ts after changing a route's schema.
writeFileSync(API_TYPES_PATH, await generateApiTypes());
process.stdout.write(`wrote ${API_TYPES_PATH}\n`);
