// A whole Worker: POST /run runs a task in fresh fuel-metered sandboxes, GET /health answers.
// Closed until `wrangler secret put CAPSULE_TOKEN`; /run then requires `Authorization: Bearer <token>`.
import { createCapsuleApp } from "../../adapters/workers/index.ts";

export default createCapsuleApp();
