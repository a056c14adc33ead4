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
};
