// What a run of many sub-tasks that each fill their `ram` makes a page hold: the page's memory
// budget (1 GiB by default, core/runtime/memory-budget.ts) bounds the sandboxes of all its runs
// together, so sub-tasks past it wait their turn. Runs the built browser module
// (node scripts/build.mjs first) in headless Chromium and reads the resident memory of the
// browser's processes (found through CDP's SystemInfo.getProcessInfo) from /proc.
//
//   node scripts/memory-budget-page.mjs [--subtasks 24] [--ram 48] [--budget-mib 1024]
//
// The budget counts what live sandboxes may hold. A sandbox that ended leaves its linear memory
// to its Worker's garbage collector, so the tab's peak can pass the budget when waves of
// sub-tasks follow each other quickly (measured here, 64 sub-tasks: growth 1.4 GiB with a
// 512 MiB budget, 2.1 GiB with 1 GiB, 2.6 GiB with none).
import { parseArgs } from "node:util";
import { openExamplePage } from "./page-memory.mjs";

const { values } = parseArgs({
  options: {
    subtasks: { type: "string", default: "24" },
    ram: { type: "string", default: "48" },
    "budget-mib": { type: "string", default: "1024" },
  },
});
const subtasks = Number(values.subtasks);
const ramMiB = Number(values.ram);
const budgetBytes = Number(values["budget-mib"]) * 2 ** 20;
const { page, residentMiB, close } = await openExamplePage();
const inPage = (body) =>
  page.evaluate(`import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`);
await inPage(`capsule.configure({ memoryBudgetBytes: ${budgetBytes} });`);
// A first run warms the pool's Workers, so the idle figure includes them.
await inPage(
  `await capsule.run({ code: 'import { task } from "@capsule-run/sdk"; export const main = task({ name: "main" }, () => 1);', language: "ts" });`,
);
const idle = await residentMiB();

// Each sub-task fills its memory to within a few MiB of its ram, then holds it for a second.
const code = `import { task } from "@capsule-run/sdk";
export const fill = task({ name: "fill", ram: "${ramMiB}MB", compute: "HIGH" }, async () => {
  const kept: Uint8Array[] = [];
  for (let i = 0; i < ${ramMiB - 8}; i++) kept.push(new Uint8Array(1 << 20).fill(1));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return kept.length;
});
export const main = task({ name: "main", ram: "16MB" }, async () => {
  const envelopes = await Promise.all(Array.from({ length: ${subtasks} }, () => fill()));
  const outcomes: Record<string, number> = {};
  for (const e of envelopes) {
    const key = e.success ? "ok" : String(e.error?.error_type);
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  return outcomes;
});`;
let peak = idle;
const sampler = setInterval(async () => {
  peak = Math.max(peak, await residentMiB());
}, 100);
const started = performance.now();
const envelope = await inPage(
  `return capsule.run({ code: ${JSON.stringify(code)}, language: "ts" });`,
);
const elapsedMs = Math.round(performance.now() - started);
clearInterval(sampler);
console.log(
  JSON.stringify(
    {
      run: `${subtasks} concurrent sub-tasks, each filling ${ramMiB - 8} MiB of its ram="${ramMiB}MB" and holding it 1 s`,
      pageBudgetMiB: budgetBytes / 2 ** 20,
      outcomes: envelope.result ?? envelope.error,
      browserResidentMiB: { idle, peak, growth: peak - idle },
      elapsedMs,
    },
    null,
    2,
  ),
);
await close();
