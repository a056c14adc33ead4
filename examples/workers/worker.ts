// A whole Worker: POST /run runs a task in fresh fuel-metered sandboxes, GET /health answers.
// `wrangler secret put CAPSULE_TOKEN` makes /run require `Authorization: Bearer <token>`.
import { createCapsuleApp } from "../../adapters/workers/index.ts";

export default createCapsuleApp();
