// A whole Worker: POST /run runs a task in fresh fuel-metered sandboxes, GET /health answers.
// Closed until `wrangler secret put CAPSULE_TOKEN`; /run then requires `Authorization: Bearer <token>`.
// With `--env playground` (wrangler.jsonc) the same Worker also serves the playground page, whose
// files the host serves before any request reaches this code.
import { createCapsuleApp } from "../../adapters/workers/index.ts";

const app = createCapsuleApp();

export default {
  /** Every answer of the Worker's own is fresh: a run's envelope is never served from a cache. */
  async fetch(...args: Parameters<typeof app.fetch>): Promise<Response> {
    const response = await app.fetch(...args);
    const fresh = new Response(response.body, response);
    fresh.headers.set("Cache-Control", "no-store");
    return fresh;
  },
};
