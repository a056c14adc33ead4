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
};
