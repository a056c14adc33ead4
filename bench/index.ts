import { availableParallelism, loadavg } from "node:os";
import { shutdown } from "../adapters/node/index.ts";
import { benchFuelOverhead, formatReport } from "./fuel-overhead.ts";
import { benchPython, formatPythonSteps } from "./python.ts";
import { benchRuntime } from "./runtime.ts";
import { benchSessions } from "./session.ts";
import { benchPageSessions } from "./session-page.ts";
import { benchSizes } from "./sizes.ts";

/** `npm run bench`: every benchmark in one process, one run, printed as a Markdown report. */
export async function main(root: string): Promise<string> {
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  const load = loadavg()[0]?.toFixed(2);
  const runtime = await benchRuntime(root, log);
  await shutdown();
  const sessions = await benchSessions(log);
  const pageSessions = await benchPageSessions(root, log);
  log("fuel overhead: metered vs stock QuickJS");
  const fuel = await benchFuelOverhead({ root, log });
  log("sizes: the browser folder and the Worker bundle");
  const sizes = await benchSizes(root);
  const python = await benchPython(root, log);
  const rows: [string, string, string][] = [
    [
      "hello through run(), in-process, p50 / p90",
      `${runtime.helloInProcessP50Ms} / ${runtime.helloInProcessP90Ms} ms`,
      "p50 <= 0.5 ms",
    ],
    [
      "hello tasks per second, shared pool, 16 in flight",
      `${runtime.helloPerSecond16InFlight}`,
      ">= 1500",
    ],
    [
      "`capsule run examples/hello.ts`, whole process, cold compile",
      `${runtime.cliColdMs} ms`,
      "-",
    ],
    [
      "`capsule run examples/hello.ts`, whole process, cached bundle (median of 10)",
      `${runtime.cliCachedMs} ms`,
      "<= 200 ms",
    ],
    [
      "caller's worst event-loop delay during a HIGH busy task",
      `${runtime.worstEventLoopDelayMs} ms (task ran ${runtime.busyTaskMs} ms)`,
      "<= 20 ms",
    ],
    [
      "8 CPU-bound sub-tasks, one by one vs concurrent",
      `${runtime.fanoutSequentialMs} / ${runtime.fanoutConcurrentMs} ms = ${runtime.fanoutSpeedup}x`,
      `report (${availableParallelism()} cores)`,
    ],
    [
      "cell call, stateless vs session (fresh sandbox + state image restore), p50 / p90",
      `${sessions.statelessP50Ms} / ${sessions.statelessP90Ms} ms vs ${sessions.sessionP50Ms} / ${sessions.sessionP90Ms} ms (image ${sessions.imageKb} KiB)`,
      "-",
    ],
    [
      "session call with ~8 MiB of live data, p50",
      `${sessions.largeSessionP50Ms} ms (image ${sessions.largeImageKb} KiB)`,
      "-",
    ],
    [
      `page (Chromium ${pageSessions.chromium}): cell call, stateless vs session, p50 / p90`,
      `${pageSessions.statelessP50Ms} / ${pageSessions.statelessP90Ms} ms vs ${pageSessions.sessionP50Ms} / ${pageSessions.sessionP90Ms} ms (${pageSessions.statelessRuns} / ${pageSessions.sessionRuns} calls, image ${pageSessions.imageKb} KiB)`,
      "-",
    ],
    [
      "page: Python cell call, stateless runPython vs session, p50",
      `${pageSessions.pythonStatelessP50Ms} ms vs ${pageSessions.pythonSessionP50Ms} ms (${pageSessions.pythonStatelessRuns} / ${pageSessions.pythonSessionRuns} calls, image ${pageSessions.pythonImageKb} KiB)`,
      "-",
    ],
    [
      "page: stateless cell call with a read-write directory grant (a session's workspace), p50",
      `${pageSessions.grantP50Ms} ms (${pageSessions.grantRuns} calls)`,
      "-",
    ],
    [
      "browser: what a page fetches for its first JavaScript task, journal: false (engine wasm part of it), gzip -9",
      `${sizes.browserInitialKb} KB (engine ${sizes.engineKb} KB)`,
      "<= 350 KB",
    ],
    [
      "browser: what a recorded run (the default) fetches on top: the journal's Worker and SQLite, gzip -9",
      `${sizes.browserJournalKb} KB`,
      "-",
    ],
    [
      "browser: fetched on first use (TypeScript transformer / large guest modules)",
      `${sizes.browserTypeScriptKb} KB / ${sizes.browserLazyGuestKb} KB`,
      "-",
    ],
    [
      "Worker bundle as `wrangler deploy` uploads it, gzip -9",
      `${sizes.workerKb} KB`,
      "<= 1024 KB",
    ],
    [
      "Python hello through run(), first run in a process (two interpreters load)",
      `${python.coldMs} ms`,
      "-",
    ],
    [
      "capsule run examples/hello.py, whole process: no task list kept / kept (median of 3)",
      `${python.cliFirstMs} / ${python.cliKeptMs} ms`,
      "<= 2000 ms",
    ],
    [
      "Python hello through run(), warm pool, p50 / p90",
      `${python.warmP50Ms} / ${python.warmP90Ms} ms`,
      "p50 <= 10 ms",
    ],
    ["Python warm hello, medians of each step", formatPythonSteps(python.steps), "-"],
  ];
  return [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${availableParallelism()} cores, Node ${process.version}, load average ${load} at start.`,
    "",
    "| benchmark | measured | target |",
    "|---|---|---|",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
    "```",
    formatReport(fuel),
    "```",
  ].join("\n");
}
