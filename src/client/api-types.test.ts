import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { API_TYPES_PATH, generateApiTypes } from "../../scripts/api-types.js";

describe("the generated API types", () => {
  it("are what openapi-typescript makes of the current /openapi.json (run npm run api-types after changing a route's schema)", async () => {
    assert.equal(readFileSync(API_TYPES_PATH, "utf8"), await generateApiTypes(), `${API_TYPES_PATH} is stale: npm run api-types`);
  });
});
