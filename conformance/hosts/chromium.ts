// The browser adapter in a real Chromium as a conformance host: the built dist/browser module in
// a page, each case with its own OPFS directory next to one the tasks must never reach.
import type { Browser, Page } from "playwright-core";
import { features } from "../../adapters/browser/features.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import { launchChromium, type StaticServer, serveStatic } from "../../e2e/support.ts";
import { type ConformanceHost, runRequestOf } from "../case.ts";
import { pathsToRead } from "../suite.ts";
import {
  checkHello,
  checkPrototypes,
  HELLO,
  OUTSIDE_FILE,
  OUTSIDE_TEXT,
  prototypeKeys,
} from "./unharmed.ts";

const root = new URL("../..", import.meta.url).pathname;
const OPFS_BASE = "conformance";

export async function startChromiumHost(): Promise<ConformanceHost> {
  const server: StaticServer = await serveStatic(root);
  const browser: Browser = await launchChromium();
  const page: Page = await browser.newPage();
  await page.goto(`${server.origin}/examples/browser/index.html`);
  const prototypesBefore = await page.evaluate(prototypeKeys);
  let count = 0;

  /** Runs `body` in the page with the built module as `capsule` and `input` parsed. */
  const inPage = <T>(input: unknown, body: string): Promise<T> =>
    page.evaluate(
      `import("/dist/browser/capsule.js").then(async (capsule) => { const input = ${JSON.stringify(input)}; ${body} })`,
    ) as Promise<T>;

  // As JSON text: Playwright's own serialisation drops an own "__proto__" key, which a case checks.
  const runCase = async (input: {
    options: Record<string, unknown>;
    files: Record<string, string>;
    read: string[];
    opfsRoot: string;
  }) =>
    JSON.parse(
      await inPage<string>(
        input,
        `const { opfsRoot } = input;
      for (const [path, text] of Object.entries(input.files)) await capsule.writeFile(path, text, { opfsRoot });
      const envelope = await capsule.run({ ...input.options, opfsRoot });
      const files = {};
      for (const path of input.read) {
        try {
          files[path] = new TextDecoder().decode(await capsule.readFile(path, { opfsRoot }));
        } catch {
          files[path] = null;
        }
      }
      return JSON.stringify({ envelope, files });`,
      ),
    ) as { envelope: Envelope; files: Record<string, string | null> };

  await inPage(
    { file: OUTSIDE_FILE, text: OUTSIDE_TEXT, opfsRoot: `${OPFS_BASE}/outside` },
    `await capsule.writeFile(input.file, input.text, { opfsRoot: input.opfsRoot });`,
  );

  return {
    features,
    secrets: [],
    async run(testCase, origin) {
      const { envelope, files } = await runCase({
        options: runRequestOf(testCase, origin),
        files: testCase.files ?? {},
        read: pathsToRead(testCase),
        opfsRoot: `${OPFS_BASE}/case-${count++}`,
      });
      return { kind: "envelope", envelope, files };
    },
    async checkUnharmed() {
      checkPrototypes(prototypesBefore, await page.evaluate(prototypeKeys));
      const secret = await inPage<string>(
        { file: OUTSIDE_FILE, opfsRoot: `${OPFS_BASE}/outside` },
        `return new TextDecoder().decode(await capsule.readFile(input.file, { opfsRoot: input.opfsRoot }));`,
      );
      if (secret !== OUTSIDE_TEXT) throw new Error("a file outside every OPFS project was changed");
      const { envelope } = await runCase({
        options: { code: HELLO, language: "ts" },
        files: {},
        read: [],
        opfsRoot: `${OPFS_BASE}/hello`,
      });
      checkHello(envelope);
    },
    async close() {
      await inPage({}, `await capsule.removeFile(${JSON.stringify(OPFS_BASE)}).catch(() => {});`);
      await browser.close();
      await server.close();
    },
  };
}
