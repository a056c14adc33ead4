import { deserialize, type SerializedRecord, serialize } from "@ungap/structured-clone";
import type { ChunkInstaller } from "../chunk.ts";

export interface StructuredCloneExports {
  structuredClone<T>(value: T, options?: unknown): T;
}

const install: ChunkInstaller<StructuredCloneExports> = (ctx) => ({
  structuredClone<T>(value: T): T {
    // biome-ignore lint/complexity/noArguments: a missing argument must differ from undefined, and the function keeps length 1 as on the web platform
    if (arguments.length < 1) {
      throw new TypeError(
        "Failed to execute 'structuredClone': 1 argument required, but only 0 present.",
      );
    }
    let record: SerializedRecord;
    try {
      // No options are passed on: the package's `json`/`lossy` modes are not structured clone.
      record = serialize(value);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new (ctx.load("dom-exception").DOMException)(
        `${reason.replace(/^unable to serialize /, "")} could not be cloned.`,
        "DataCloneError",
      );
    }
    return deserialize(record) as T;
  },
});
export default install;
