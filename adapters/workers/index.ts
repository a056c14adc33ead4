/**
 * capsule-portable on Cloudflare Workers: `export default createCapsuleApp()` is a whole Worker.
 * Its wrangler.jsonc needs no module rule and no compatibility flag: wrangler's default rules
 * compile the engine's `.wasm` import at deploy time (examples/workers/wrangler.jsonc).
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
