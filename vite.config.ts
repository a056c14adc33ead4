import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "core/**/*.test.ts",
      "sdk/**/*.test.ts",
      "adapters/node/**/*.test.ts",
      "adapters/workers/**/*.test.ts",
      "e2e/**/*.test.ts",
      "conformance/**/*.test.ts",
      "consumer/**/*.test.ts",
      "examples/**/*.test.ts",
      "playground/**/*.test.ts",
      "*.test.ts",
    ],
    globalSetup: ["conformance/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
