#!/usr/bin/env node
import { fileURLToPath } from "node:url";
import { needsBaselineTierRestart, restartOnBaselineTier } from "../dist/launch.mjs";

const argv = process.argv.slice(2);
if (needsBaselineTierRestart(argv)) {
  restartOnBaselineTier(fileURLToPath(import.meta.url), argv);
} else {
  import("../dist/cli.mjs").catch((error) => {
    // A Node line the package does not support: its message alone, not a stack trace.
    if (error?.code !== "CAPSULE_UNSUPPORTED_NODE") throw error;
    process.stderr.write(`capsule: ${error.message}\n`);
    process.exitCode = 2;
  });
}
