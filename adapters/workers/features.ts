import type { HostFeatures } from "../../core/features.ts";

export const features: HostFeatures = {
  host: "workers",
  files: "request",
  missingGrantDirectory: "created",
  symlinks: false,
  mounts: false,
  network: "platform-fetch",
  checksResolvedAddress: false,
  cors: false,
  followsCrossOriginRedirects: true,
  badRequest: "http-400",
  runawayGuard: "fuel-per-timeout",
  subtasks: "same-isolate",
  python: "unavailable",
  memoryBudget: "isolate",
  // Of the isolate's 128 MB, the rest holds the Worker itself and the requests' files.
  memoryBudgetBytes: 96 * 2 ** 20,
};
