// A whole Worker: POST /run runs a task in fresh fuel-metered sandboxes, GET /health answers.
// Closed until `wrangler secret put CAPSULE_TOKEN`; /run then requires `Authorization: Bearer <token>`.
// With `--env playground` (wrangler.jsonc) the same Worker also serves the playground page, whose
// files the host serves before any request reaches this code (a file too large for the host is
// stored in parts, joined here).
import { createCapsuleApp } from "../../adapters/workers/index.ts";
import { type AssetsBinding, serveSplitAsset } from "./split-assets.ts";

// Each run in a Durable Object of its own, which journals it (wrangler.jsonc binds it as
// CAPSULE_RUNS): GET /runs, GET /runs/:id and POST /runs/:id/resume answer from them.
export { CapsuleRun } from "../../adapters/workers/index.ts";

const app = createCapsuleApp();

export default {
  async fetch(...args: Parameters<typeof app.fetch>): Promise<Response> {
    const [request, env, ctx] = args;
    const assets = (env as { ASSETS?: AssetsBinding } | undefined)?.ASSETS;
    if (assets !== undefined) {
      const joined = await serveSplitAsset(request, assets, (promise) => ctx?.waitUntil(promise));
      if (joined !== null) return joined;
    }
    const response = await app.fetch(...args);
    // Every answer of the Worker's own is fresh: a run's envelope is never served from a cache.
    const fresh = new Response(response.body, response);
    fresh.headers.set("Cache-Control", "no-store");
    return fresh;
  },
};
