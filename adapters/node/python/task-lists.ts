/**
 * A Python file's task list, kept on disk beside the compile cache: reading a file's tasks starts
 * an interpreter of its own (seconds), so a `capsule run` of a file whose text was read before
 * starts one interpreter instead of two. Entries are signed (../signed-cache.ts) and keyed by the
 * build (the engine and the child script, which holds the runner and the SDK), the file's name
 * and its text.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { TaskListStore } from "../../../core/python/tasks.ts";
import { defaultCacheKeyFile, loadCacheKey, readSigned, writeSigned } from "../signed-cache.ts";
import { MAX_MESSAGE_BYTES } from "./protocol.ts";
import { pythonImageKey } from "./runner.ts";

const FORMAT = "python-task-list-1";
/**
 * A list larger than this is not read: a discovery's outcome crosses the child's pipe in one
 * message, and the signed entry escapes its JSON once more (at most twice its length).
 */
const MAX_ENTRY_BYTES = 2 * MAX_MESSAGE_BYTES;

/** A store in `cacheDir`; `onWarning` hears once why it cannot be used, if it cannot. */
export function taskListStore(
  cacheDir: string,
  options: { keyFile?: string; onWarning?: (message: string) => void } = {},
): TaskListStore {
  let warned = false;
  const warn = (message: string) => {
    if (warned) return;
    warned = true;
    options.onWarning?.(message);
  };
  const key = () => loadCacheKey(options.keyFile ?? defaultCacheKeyFile(), warn);
  const place = (fileName: string, source: string) => {
    const diskKey = createHash("sha256")
      .update([FORMAT, pythonImageKey(), fileName, source].join("\0"))
      .digest("hex");
    return { diskKey, file: path.join(cacheDir, `python-tasks-${diskKey}.json`) };
  };
  return {
    get(fileName, source) {
      try {
        const signingKey = key();
        if (signingKey === null) return undefined;
        const { diskKey, file } = place(fileName, source);
        const entry = readSigned(file, diskKey, signingKey, MAX_ENTRY_BYTES) as
          | { listing?: unknown }
          | undefined;
        const listing = entry?.listing;
        if (typeof listing !== "object" || listing === null || Array.isArray(listing)) {
          return undefined;
        }
        return listing as Record<string, unknown>;
      } catch {
        // Not kept, whatever failed: the file is read again.
        return undefined;
      }
    },
    put(fileName, source, listing) {
      try {
        const signingKey = key();
        if (signingKey === null) return;
        const { diskKey, file } = place(fileName, source);
        writeSigned(cacheDir, file, diskKey, signingKey, { listing });
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code ?? String(error);
        warn(
          `Python task lists cannot be kept in ${cacheDir} (${reason}); reading each file again`,
        );
      }
    },
  };
}
