/**
 * capsule-portable on Cloudflare Workers: `export default createCapsuleApp()` is a whole Worker.
 * Its wrangler.jsonc needs no module rule and no compatibility flag: wrangler's default rules
 * compile the engine's `.wasm` import at deploy time (examples/workers/wrangler.jsonc).
 * Export `CapsuleRun` from the Worker too and bind it as CAPSULE_RUNS, and each run is journaled
 * in a Durable Object of its own (run-object.ts): `GET /runs`, `GET /runs/:id`,
 * `POST /runs/:id/resume`.
 */

export type { HostFeatures } from "../../core/features.ts";
export type { Envelope, EnvelopeError, ErrorType, Execution } from "../../core/runtime/envelope.ts";
export type { RuntimeSettings } from "../../core/runtime/settings.ts";
export {
  type CapsuleAppOptions,
  createCapsuleApp,
  DEFAULT_ANONYMOUS_BINDING,
  DEFAULT_CORS_BINDING,
  DEFAULT_LOCAL_ANONYMOUS_BINDING,
  DEFAULT_TOKEN_BINDING,
  type ErrorResponse,
  type RunResponse,
} from "./app.ts";
export { features } from "./features.ts";
export type { FileContent } from "./files.ts";
export type { RunRequest } from "./request.ts";
export {
  CapsuleRun,
  createCapsuleRunObject,
  DEFAULT_RUNS_BINDING,
  MAX_KEPT_RESPONSE_CHARS,
} from "./run-object.ts";
