import { join } from "node:path";
import { launchChromium, serveStatic } from "../e2e/support.ts";
import { percentiles } from "./session.ts";

export interface PageSessionBench {
  /** Calls measured per side (fewer than RUNS when the time limit ended a side early). */
  statelessRuns: number;
  grantRuns: number;
  sessionRuns: number;
  statelessP50Ms: number;
  statelessP90Ms: number;
  /** Stateless, with the read-write directory grant a session's cells have (its workspace). */
  grantP50Ms: number;
  sessionP50Ms: number;
  sessionP90Ms: number;
  /** The session's state image after the set-up cell, in KiB. */
  imageKb: number;
  /** Python: stateless `runPython` against one Python `Session`, fewer calls (about 1 s each). */
  pythonStatelessRuns: number;
  pythonSessionRuns: number;
  pythonStatelessP50Ms: number;
  pythonSessionP50Ms: number;
  pythonImageKb: number;
  chromium: string;
}

const RUNS = 100;
const WARMUP = 20;
/**
 * Each side (stateless, stateless with a grant, session) stops at RUNS calls or after this long,
 * warm-up included, whichever is first.
 */
const SIDE_LIMIT_MS = 30_000;
/** Python calls a side, after PYTHON_WARMUP; a side stops after PYTHON_SIDE_LIMIT_MS. */
const PYTHON_RUNS = 10;
const PYTHON_WARMUP = 2;
const PYTHON_SIDE_LIMIT_MS = 60_000;
/** The whole bench, page load included, is abandoned after this long. */
const TOTAL_LIMIT_MS = 300_000;

interface SideTimes {
  times: number[];
}

/**
 * The same comparison as bench/session.ts, in a page of a real Chromium running the built
 * browser module (dist/browser/capsule.js): `runCode` (stateless) against one `Session`, the same
 * small cell back to back, each call a fresh sandbox in a Web Worker; the session's also restores
 * its image and captures the next, and the page keeps it between calls. Wall-clock per call as
 * the page sees it.
 */
export async function benchPageSessions(
  root: string,
  log: (line: string) => void,
): Promise<PageSessionBench> {
  log(
    `page sessions: up to ${RUNS} stateless calls, with and without a directory grant, vs ${RUNS} session calls in Chromium (after ${WARMUP} warm-up each, at most ${SIDE_LIMIT_MS / 1000} s a side)`,
  );
  const server = await serveStatic(join(root, "dist"));
  const browser = await launchChromium();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const page = await browser.newPage();
    // A blank page of the server's origin, so the module, its workers and OPFS are same-origin.
    await page.route(`${server.origin}/bench.html`, (route) =>
      route.fulfill({ contentType: "text/html", body: "<!doctype html><title>bench</title>" }),
    );
    await page.goto(`${server.origin}/bench.html`);
    const measured = page.evaluate(measureInPage, {
      url: `${server.origin}/browser/capsule.js`,
      runs: RUNS,
      warmup: WARMUP,
      sideLimitMs: SIDE_LIMIT_MS,
      python: { runs: PYTHON_RUNS, warmup: PYTHON_WARMUP, sideLimitMs: PYTHON_SIDE_LIMIT_MS },
    });
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the page session bench took over ${TOTAL_LIMIT_MS / 1000} s`)),
        TOTAL_LIMIT_MS,
      );
    });
    const result = await Promise.race([measured, limit]);
    const stateless = percentiles(result.stateless.times);
    const session = percentiles(result.session.times);
    const grant = percentiles(result.grant.times);
    const pythonStateless = percentiles(result.pythonStateless.times);
    const pythonSession = percentiles(result.pythonSession.times);
    return {
      statelessRuns: result.stateless.times.length,
      grantRuns: result.grant.times.length,
      sessionRuns: result.session.times.length,
      statelessP50Ms: stateless.p50,
      statelessP90Ms: stateless.p90,
      grantP50Ms: grant.p50,
      sessionP50Ms: session.p50,
      sessionP90Ms: session.p90,
      imageKb: Math.round(result.imageBytes / 1024),
      pythonStatelessRuns: result.pythonStateless.times.length,
      pythonSessionRuns: result.pythonSession.times.length,
      pythonStatelessP50Ms: pythonStateless.p50,
      pythonSessionP50Ms: pythonSession.p50,
      pythonImageKb: Math.round(result.pythonImageBytes / 1024),
      chromium: browser.version(),
    };
  } finally {
    clearTimeout(timer);
    await browser.close();
    await server.close();
  }
}

/** Runs in the page: serialized by Playwright, so it uses nothing from this module's scope. */
async function measureInPage(input: {
  url: string;
  runs: number;
  warmup: number;
  sideLimitMs: number;
  python: { runs: number; warmup: number; sideLimitMs: number };
}): Promise<{
  stateless: SideTimes;
  grant: SideTimes;
  session: SideTimes;
  imageBytes: number;
  pythonStateless: SideTimes;
  pythonSession: SideTimes;
  pythonImageBytes: number;
}> {
  const capsule = (await import(input.url)) as typeof import("../adapters/browser/index.ts");
  const time = async (
    call: () => Promise<unknown>,
    { runs, warmup, sideLimitMs }: { runs: number; warmup: number; sideLimitMs: number } = input,
  ): Promise<SideTimes> => {
    const end = performance.now() + sideLimitMs;
    for (let i = 0; i < warmup && performance.now() < end; i++) await call();
    const times: number[] = [];
    while (times.length < runs && performance.now() < end) {
      const started = performance.now();
      await call();
      times.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return { times };
  };
  const stateless = await time(async () => {
    const envelope = await capsule.runCode({ language: "javascript", code: "let n = 1; n + 1" });
    if (!envelope.success) throw new Error(envelope.error?.message);
  });
  const opfsRoot = "capsule-bench";
  await capsule.writeFile("workspace/.keep", "", { opfsRoot });
  const grant = await time(async () => {
    const envelope = await capsule.runCode({
      language: "javascript",
      code: "let n = 1; n + 1",
      allowedFiles: [{ path: "./workspace", mode: "rw" }],
      opfsRoot,
    });
    if (!envelope.success) throw new Error(envelope.error?.message);
  });
  await capsule.removeFile("workspace", { opfsRoot });
  const session = new capsule.Session("javascript");
  try {
    await session.run("let n = 0; const next = () => ++n;");
    const small = await time(() => session.run("next() + 1"));
    const imageBytes = session.stateBytes;
    const pythonStateless = await time(async () => {
      const envelope = await capsule.runCode({ language: "python", code: "n = 1\nn + 1" });
      if (!envelope.success) throw new Error(envelope.error?.message);
    }, input.python);
    const python = new capsule.Session("python");
    try {
      await python.run("n = 0\ndef step():\n    global n\n    n += 1\n    return n");
      const pythonSession = await time(() => python.run("step() + 1"), input.python);
      return {
        stateless,
        grant,
        session: small,
        imageBytes,
        pythonStateless,
        pythonSession,
        pythonImageBytes: python.stateBytes,
      };
    } finally {
      await python.close();
    }
  } finally {
    await session.close();
  }
}
