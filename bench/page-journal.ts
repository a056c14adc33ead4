// What the run journal costs in a page (adapters/browser/journal.ts): `npm run bench --
// --only=page-journal`. Each round is a fresh Chromium profile on disk (a private context keeps
// OPFS in memory behind IPC, about 30x slower per write, and is not what a visitor's tab uses):
// the first run of the page with and without the journal, then medians of hello runs and of a
// workflow of 20 sequential sub-tasks, recorded and not, and how long a reload takes to reopen it.
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumPath, serveStatic } from "../e2e/support.ts";

const ROUNDS = 3;
const HELLO_RUNS = 30;
const FAN_RUNS = 10;
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

interface Round {
  firstRunOnMs: number;
  firstRunOffMs: number;
  helloOnMs: number;
  helloOffMs: number;
  fan20OnMs: number;
  fan20OffMs: number;
  reopenMs: number;
}

const PAGE_SCRIPT = `async (capsule, journal) => {
  const hello = "import { task } from '@capsule-run/sdk'; export const main = task({ name: 'main' }, () => 'hi');";
  const s = performance.now();
  await capsule.run({ code: hello, journal });
  return performance.now() - s;
}`;

const MEDIANS = `async (capsule, helloRuns, fanRuns) => {
  const hello = "import { task } from '@capsule-run/sdk'; export const main = task({ name: 'main' }, () => 'hi');";
  const fan = "import { task } from '@capsule-run/sdk'; export const step = task({ name: 'step' }, (n) => n); export const main = task({ name: 'main' }, async () => { let s = 0; for (let i = 0; i < 20; i++) { const e = await step(String(i)); s += Number(e.result); } return s; });";
  const median = async (code, journal, n) => {
    const times = [];
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      await capsule.run({ code, journal });
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(n / 2)];
  };
  await capsule.run({ code: fan, journal: false });
  return {
    helloOffMs: await median(hello, false, helloRuns),
    helloOnMs: await median(hello, true, helloRuns),
    fan20OffMs: await median(fan, false, fanRuns),
    fan20OnMs: await median(fan, true, fanRuns),
  };
}`;

async function firstRun(origin: string, journal: boolean): Promise<number> {
  const profile = mkdtempSync(join(tmpdir(), "capsule-bench-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    args: ARGS,
  });
  try {
    await context.route(`${origin}/blank.html`, (route) =>
      route.fulfill({ contentType: "text/html", body: "<!doctype html>" }),
    );
    const page = await context.newPage();
    await page.goto(`${origin}/blank.html`);
    return (await page.evaluate(
      `import("/dist/browser/capsule.js").then((capsule) => (${PAGE_SCRIPT})(capsule, ${journal}))`,
    )) as number;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function round(origin: string): Promise<Round> {
  const firstRunOnMs = await firstRun(origin, true);
  const firstRunOffMs = await firstRun(origin, false);
  const profile = mkdtempSync(join(tmpdir(), "capsule-bench-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    args: ARGS,
  });
  try {
    await context.route(`${origin}/blank.html`, (route) =>
      route.fulfill({ contentType: "text/html", body: "<!doctype html>" }),
    );
    const page = await context.newPage();
    await page.goto(`${origin}/blank.html`);
    const medians = (await page.evaluate(
      `import("/dist/browser/capsule.js").then((capsule) => (${MEDIANS})(capsule, ${HELLO_RUNS}, ${FAN_RUNS}))`,
    )) as Omit<Round, "firstRunOnMs" | "firstRunOffMs" | "reopenMs">;
    await page.reload();
    const reopenMs = (await page.evaluate(
      `import("/dist/browser/capsule.js").then(async (capsule) => { const s = performance.now(); await capsule.listRuns(); return performance.now() - s; })`,
    )) as number;
    return { firstRunOnMs, firstRunOffMs, ...medians, reopenMs };
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

export async function main(rootDir: string): Promise<string> {
  const server = await serveStatic(rootDir);
  const rounds: Round[] = [];
  try {
    for (let i = 0; i < ROUNDS; i++) rounds.push(await round(server.origin));
  } finally {
    await server.close();
  }
  const ms = (key: keyof Round) => rounds.map((r) => Math.round(r[key])).join(" / ");
  return [
    `| page journal (${ROUNDS} rounds, each a fresh profile) | recorded | unrecorded |`,
    "|---|---|---|",
    `| first run of a page, hello | ${ms("firstRunOnMs")} ms | ${ms("firstRunOffMs")} ms |`,
    `| hello, median of ${HELLO_RUNS} | ${ms("helloOnMs")} ms | ${ms("helloOffMs")} ms |`,
    `| 20 sequential sub-tasks, median of ${FAN_RUNS} | ${ms("fan20OnMs")} ms | ${ms("fan20OffMs")} ms |`,
    `| reopening after a reload (listRuns) | ${ms("reopenMs")} ms | - |`,
    `load average ${loadavg()[0]?.toFixed(2)} when it ended`,
  ].join("\n");
}
