// The Workers adapter in real workerd as a conformance host: the bundle `wrangler deploy` would
// upload, served by Miniflare; each case is one POST /run with its files in the request.
import { join } from "node:path";
import type { Miniflare } from "miniflare";
import { features } from "../../adapters/workers/features.ts";
import type { ErrorResponse, FileContent, RunResponse } from "../../adapters/workers/index.ts";
import { buildWorkerBundle, root, serveWorkers } from "../../e2e/workerd.ts";
import { type ConformanceHost, runRequestOf } from "../case.ts";
import { pathsToRead } from "../suite.ts";
import { checkHello, HELLO } from "./unharmed.ts";

const TOKEN = "conformance token";

export async function startWorkerdHost(): Promise<ConformanceHost> {
  // Its own folder: the workerd e2e suite builds dist/workers at the same time.
  const outdir = join(root, "dist/workers-conformance");
  await buildWorkerBundle(outdir);
  // A Worker is closed until it has a token: the suite sends one, as a deployed caller would.
  const miniflare: Miniflare = await serveWorkers(outdir, [
    { name: "capsule", bindings: { CAPSULE_TOKEN: TOKEN } },
  ]);

  const post = async (body: Record<string, unknown>) => {
    const response = await miniflare.dispatchFetch("http://capsule.test/run", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      json: (await response.json()) as RunResponse | ErrorResponse,
    };
  };

  return {
    features,
    secrets: [],
    async run(testCase, origin) {
      const { status, json } = await post({
        ...runRequestOf(testCase, origin),
        files: testCase.files ?? {},
      });
      if (status !== 200) {
        return { kind: "refused", status, message: (json as ErrorResponse).error.message };
      }
      const { files: changed, ...envelope } = json as RunResponse;
      const files: Record<string, string | null> = {};
      for (const path of pathsToRead(testCase)) {
        files[path] =
          path in changed ? textOf(changed[path] ?? null) : (testCase.files?.[path] ?? null);
      }
      return { kind: "envelope", envelope, files };
    },
    async checkUnharmed() {
      const health = await miniflare.dispatchFetch("http://capsule.test/health");
      if (health.status !== 200) throw new Error(`GET /health answered ${health.status}`);
      const { json } = await post({ code: HELLO, language: "ts" });
      checkHello(json as RunResponse);
    },
    async close() {
      await miniflare.dispose();
    },
  };
}

function textOf(content: FileContent | null): string | null {
  if (content === null) return null;
  return typeof content === "string"
    ? content
    : Buffer.from(content.base64, "base64").toString("utf8");
}
