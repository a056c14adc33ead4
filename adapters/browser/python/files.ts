/**
 * Files for Python tasks on the page. The sandbox cannot wait while the page answers (no shared
 * memory in an opaque-origin Worker), so before each attempt the granted OPFS directories are
 * copied in, the sandbox answers the task's file calls from its copy under the same policy, and
 * the changes it reports are checked against the grants again here and written back to OPFS.
 */
import { TaskError } from "../../../core/errors.ts";
import { applyChanges } from "../../../core/files/loaded-tree.ts";
import { splitPath } from "../../../core/policy/paths.ts";
import type { GrantCopies } from "../../../core/python/tasks.ts";
import { appRootHandle, directoryHandle, OpfsSnapshot, WriteBackError } from "../files.ts";
import { missingDirectory } from "../provider.ts";

export function createGrantCopies(opfsRoot: string): GrantCopies {
  return {
    async check(grants) {
      const appRoot = await appRootHandle(opfsRoot);
      for (const grant of grants) {
        try {
          await directoryHandle(appRoot, splitPath(grant.hostPath), false);
        } catch {
          throw missingDirectory(grant, opfsRoot);
        }
      }
    },
    async load(grants) {
      const appRoot = await appRootHandle(opfsRoot);
      const snapshot = new OpfsSnapshot();
      for (const grant of grants) await snapshot.load(appRoot, grant.hostPath);
      return {
        granted: snapshot.granted,
        entries: snapshot.entries(),
        async save(report, quota) {
          applyChanges(snapshot, report, grants, quota);
          try {
            await snapshot.flush(appRoot);
          } catch (error) {
            // The origin's storage ran out: the task wrote too much, the runtime did not fail.
            if (error instanceof WriteBackError && error.reason === "full") {
              throw new TaskError(error.message);
            }
            throw error;
          }
        },
      };
    },
  };
}
