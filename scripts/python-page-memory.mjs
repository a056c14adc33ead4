// What a hostile Python task in a page can make the tab hold outside its `ram`: JavaScript
// buffers in its sandbox's Worker, which the interpreter's memory cap does not cover. Runs the
// built browser module (node scripts/build.mjs first) in headless Chromium, and reads the resident
// memory of the browser's processes (found through CDP's SystemInfo.getProcessInfo) from /proc.
//
//   node scripts/python-page-memory.mjs [--gb 2] [--bound-ms 20000]
//
// The task stops at --gb (a shared machine must not run out of memory); its rate says what the
// wall-clock bound (limits.pythonTimeoutMs, default 60 s) lets through before it ends the task.
import { parseArgs } from "node:util";
import { openExamplePage } from "./page-memory.mjs";

const { values } = parseArgs({
  options: {
    gb: { type: "string", default: "2" },
    "bound-ms": { type: "string", default: "20000" },
  },
});
const limitBytes = Number(values.gb) * 1024 ** 3;
const boundMs = Number(values["bound-ms"]);
const { page, residentMiB, close } = await openExamplePage();
await page.evaluate(
  `import("/dist/browser/capsule.js").then((capsule) => capsule.preparePython())`,
);
const idle = await residentMiB();

const code = `import asyncio
from capsule import task


@task(name="main", compute="LOW", ram="64MB")
async def main(limit):
    import js
    held = []
    started = js.performance.now()
    while len(held) * 64 * 1024 * 1024 < int(limit):
        held.append(js.Uint8Array.new(64 * 1024 * 1024).fill(1))
    print("filled", len(held) * 64, "MiB in", round(js.performance.now() - started), "ms of wall clock")
    await asyncio.get_running_loop().create_future()
`;
let peak = idle;
const sampler = setInterval(async () => {
  peak = Math.max(peak, await residentMiB());
}, 200);
const started = performance.now();
const outcome = await page.evaluate(
  `import("/dist/browser/capsule.js").then((capsule) => { const lines = []; return capsule.run({ code: ${JSON.stringify(code)}, language: "py", args: ["${limitBytes}"], limits: { pythonTimeoutMs: ${boundMs} }, onLog: (level, text) => lines.push(text) }).then((envelope) => ({ envelope, lines })); })`,
);
const elapsedMs = Math.round(performance.now() - started);
clearInterval(sampler);
// A terminated Worker's memory is returned to the system a moment later.
await new Promise((resolve) => setTimeout(resolve, 5000));
const after = await residentMiB();
console.log(
  JSON.stringify(
    {
      asked: `${values.gb} GiB of JavaScript buffers from a task with ram=64MB`,
      boundMs,
      envelope: {
        success: outcome.envelope.success,
        error: outcome.envelope.error,
        ram_used: outcome.envelope.execution.ram_used,
      },
      log: outcome.lines,
      browserResidentMiB: { idleWithOneSandbox: idle, peak, fiveSecondsAfterTheTaskEnded: after },
      elapsedMs,
    },
    null,
    2,
  ),
);
await close();
