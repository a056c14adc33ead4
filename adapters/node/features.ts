import { totalmem } from "node:os";
import type { HostFeatures } from "../../core/features.ts";

export const features: HostFeatures = {
  host: "node",
  files: "directory",
  missingGrantDirectory: "config_error",
  symlinks: true,
  mounts: true,
  network: "node-http",
  checksResolvedAddress: true,
  cors: false,
  followsCrossOriginRedirects: true,
  badRequest: "envelope",
  runawayGuard: "terminate-thread",
  subtasks: "threads",
  python: "child-process",
  memoryBudget: "process",
  // Half the machine's memory, at most 8 GiB (two sandboxes at wasm32's 4 GiB each).
  memoryBudgetBytes: Math.min(Math.floor(totalmem() / 2), 8 * 2 ** 30),
};
