import type { HostFeatures } from "../../core/features.ts";

export const features: HostFeatures = {
  host: "browser",
  files: "opfs",
  missingGrantDirectory: "config_error",
  symlinks: false,
  mounts: false,
  network: "platform-fetch",
  checksResolvedAddress: false,
  cors: true,
  followsCrossOriginRedirects: false,
  badRequest: "envelope",
  runawayGuard: "terminate-worker",
  subtasks: "web-workers",
  python: "opaque-origin-worker",
  memoryBudget: "page",
  memoryBudgetBytes: 2 ** 30,
};
