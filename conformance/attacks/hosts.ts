/**
 * Attacks on the host's own memory: tasks and sub-tasks that ask, together, for more `ram` than
 * the host has. Each host declares what the sandboxes of all its runs may hold together
 * (`memoryBudget`): a Workers isolate 96 MiB, a page 1 GiB, a Node process half its machine's
 * memory up to 8 GiB. Past it a task is refused with an error that says so, never run into a
 * dead host or an internal_error.
 */
import { type Case, taskFile } from "../case.ts";

/** Error types of sub-task envelopes, sorted and without repeats ("ok" for success). */
const OUTCOMES = `(envelopes: { success: boolean; error: { error_type: string } | null }[]) =>
  [...new Set(envelopes.map((e) => (e.success ? "ok" : e.error?.error_type)))].sort()`;

/** Sub-tasks that each hold their sandbox for a moment, so that they all hold it together. */
const holdingSubtasks = (ram: string, count: number, extra = "") =>
  taskFile(`
    const outcomes = ${OUTCOMES};
    export const hold = task({ name: "hold", ram: "${ram}" }, async () => {
      ${extra}
      await new Promise((resolve) => setTimeout(resolve, 400));
      return "held";
    });
    export const main = task({ name: "main" }, async () => {
      const envelopes = await Promise.all(Array.from({ length: ${count} }, () => hold()));
      const refused = envelopes.find((e) => !e.success)?.error?.message ?? "";
      return { outcomes: outcomes(envelopes), refused: refused.replace(/[0-9.]+ MiB/g, "N MiB") };
    });`);

const WORKERS_WHY = "a Workers isolate has 128 MB in all: its sandboxes may hold 96 MiB together";
const PAGE_WHY = "a page's sandboxes may hold 1 GiB together";

export const HOSTS_ATTACKS: Case[] = [
  {
    id: "memory-ram-over-engine-max",
    group: "bad-input",
    title:
      "ram between 2GB and 4GB is a config_error naming the engine's 2GB, not an internal_error",
    code: taskFile(`export const main = task({ name: "main", ram: "3GB" }, () => "ran");`),
    expect: {
      success: false,
      errorType: "config_error",
      message:
        '^task "main": ram of 3072 MiB is above 2GB, the most this engine\'s sandbox can hold; use "2GB" or less$',
    },
  },
  {
    id: "memory-task-over-host-budget",
    group: "denial-of-service",
    title: "a task asking for more ram than the host's whole budget is a config_error naming it",
    code: taskFile(`export const main = task({ name: "main", ram: "2GB" }, () => "ran");`),
    expect: { success: true, result: "ran" },
    where: [
      {
        features: { memoryBudget: "isolate" },
        expect: {
          success: false,
          errorType: "config_error",
          message:
            '^task "main" asks for ram of 2048 MiB, more than the 96 MiB all sandboxes of this Worker\'s isolate may hold together; ask for at most "96MB"$',
          fuel: "any",
        },
        why: WORKERS_WHY,
      },
      {
        features: { memoryBudget: "page" },
        expect: {
          success: false,
          errorType: "config_error",
          message: "more than the 1024 MiB all sandboxes of this page may hold together",
          fuel: "any",
        },
        why: PAGE_WHY,
      },
    ],
  },
  {
    id: "memory-subtask-over-host-budget",
    group: "denial-of-service",
    title: "a sub-task asking for more ram than the host's budget is refused; its parent goes on",
    code: taskFile(`
      export const big = task({ name: "big", ram: "2GB" }, () => "ran");
      export const main = task({ name: "main" }, async () => {
        const envelope = await big();
        return envelope.success ? envelope.result : envelope.error;
      });`),
    expect: { success: true, result: "ran" },
    where: [
      {
        features: { memoryBudget: "isolate" },
        expect: {
          success: true,
          resultMatches:
            '^\\{"error_type":"config_error","message":"sub-task \\\\"big\\\\" asks for ram of 2048 MiB, more than the 96 MiB all sandboxes of this Worker\'s isolate',
          fuel: "any",
        },
        why: WORKERS_WHY,
      },
      {
        features: { memoryBudget: "page" },
        expect: {
          success: true,
          resultMatches:
            '^\\{"error_type":"config_error","message":"sub-task \\\\"big\\\\" asks for ram of 2048 MiB, more than the 1024 MiB',
          fuel: "any",
        },
        why: PAGE_WHY,
      },
    ],
  },
  {
    id: "memory-subtasks-together-over-budget",
    group: "denial-of-service",
    title:
      "twelve sub-tasks of 1GB at once: those past the host's budget wait their turn, or are refused at once where they never fit",
    code: holdingSubtasks("1GB", 12),
    // A Node process holds 8 GiB at most: seven run at once, the others when those end.
    expect: { success: true, result: { outcomes: ["ok"], refused: "" }, fuel: "any" },
    where: [
      {
        features: { memoryBudget: "isolate" },
        expect: {
          success: true,
          resultMatches:
            '^\\{"outcomes":\\["config_error"\\],"refused":"sub-task \\\\"hold\\\\" asks for ram of N MiB, more than the N MiB all sandboxes of this Worker',
          fuel: "any",
        },
        why: WORKERS_WHY,
      },
      {
        // The parent holds 256 MiB of the page's 1 GiB for as long as it runs.
        features: { memoryBudget: "page" },
        expect: {
          success: true,
          result: {
            outcomes: ["permission_denied"],
            refused:
              'sub-task "hold" refused: it asks for ram of N MiB, and the 1 task of its run above it (which keep theirs while they await it) hold at least N MiB of the N MiB all sandboxes of this page may hold together; nest sub-tasks less deeply or give them less ram',
          },
          fuel: "any",
        },
        why: PAGE_WHY,
      },
    ],
  },
  {
    id: "memory-subtasks-wait-their-turn",
    group: "denial-of-service",
    title:
      "eight sub-tasks of 40MB at once all run: where the host's budget cannot hold them together, they wait their turn",
    code: holdingSubtasks("40MB", 8),
    expect: { success: true, result: { outcomes: ["ok"], refused: "" }, fuel: "any" },
  },
  {
    id: "memory-workers-isolate-budget",
    group: "denial-of-service",
    title:
      "a sub-task of 90MB fits beside its parent in a page or a process, but not in a Workers isolate's 96 MiB",
    code: holdingSubtasks("90MB", 1),
    expect: { success: true, result: { outcomes: ["ok"], refused: "" }, fuel: "any" },
    where: [
      {
        features: { memoryBudget: "isolate" },
        expect: {
          success: true,
          result: {
            outcomes: ["permission_denied"],
            refused:
              'sub-task "hold" refused: it asks for ram of N MiB, and the 1 task of its run above it (which keep theirs while they await it) hold at least N MiB of the N MiB all sandboxes of this Worker\'s isolate may hold together; nest sub-tasks less deeply or give them less ram',
          },
          fuel: "any",
        },
        why: WORKERS_WHY,
      },
    ],
  },
  {
    id: "memory-nested-wait-cycle",
    group: "denial-of-service",
    title:
      "sub-tasks that fill the budget and each await a grandchild with no room left: the grandchildren are refused after their wait, nothing hangs",
    code: taskFile(`
      export const leaf = task({ name: "leaf", ram: "16MB" }, () => "leaf");
      export const middle = task({ name: "middle", ram: "40MB" }, async () => {
        const envelope = await leaf();
        return envelope.success ? "ok" : envelope.error?.error_type;
      });
      export const main = task({ name: "main", ram: "16MB" }, async () => {
        const outcomes = (await Promise.all([middle(), middle()])).map((e) => e.result);
        // Once one leaf is refused its middle ends, and the other leaf may get in.
        return {
          refused: outcomes.includes("permission_denied"),
          fine: outcomes.every((o) => o === "ok" || o === "permission_denied"),
        };
      });`),
    expect: { success: true, result: { refused: false, fine: true }, fuel: "any" },
    where: [
      {
        features: { memoryBudget: "isolate" },
        expect: { success: true, result: { refused: true, fine: true }, fuel: "any" },
        why: `${WORKERS_WHY}: 16 + 40 + 40 fill it, and the leaves wait 3 s, then are refused`,
      },
    ],
  },
  {
    id: "memory-subtasks-fill-their-ram",
    group: "denial-of-service",
    title:
      "twenty-four sub-tasks of 48MB that each fill their memory end refused or over their ram, the host unharmed",
    code: taskFile(`
      export const fill = task({ name: "fill", ram: "48MB" }, async () => {
        const kept: ArrayBuffer[] = [];
        await new Promise((resolve) => setTimeout(resolve, 50));
        for (;;) kept.push(new ArrayBuffer(4 << 20));
      });
      export const main = task({ name: "main" }, async () => {
        const envelopes = await Promise.all(Array.from({ length: 24 }, () => fill()));
        return envelopes
          .map((e) => e.error?.error_type)
          .filter((type) => type !== "memory_exceeded" && type !== "permission_denied");
      });`),
    expect: { success: true, result: [], fuel: "any" },
  },
  {
    id: "memory-refused-subtasks-write-nothing",
    group: "denial-of-service",
    title:
      "sub-tasks refused for memory write nothing: the files present are exactly those of the sub-tasks that ran",
    files: { "data/keep.txt": "kept" },
    code: taskFile(`import fs from "node:fs";
      export const write = task({ name: "write", ram: "1GB", allowedFiles: ["data"] }, async (i: number) => {
        await new Promise((resolve) => setTimeout(resolve, 400));
        fs.writeFileSync("data/out-" + i + ".txt", "written " + i);
        return i;
      });
      export const main = task({ name: "main", allowedFiles: ["data"] }, async () => {
        const envelopes = await Promise.all(Array.from({ length: 12 }, (_, i) => write(i)));
        const ran = envelopes.filter((e) => e.success).map((e) => "out-" + e.result + ".txt");
        const present = fs.readdirSync("data").filter((name) => name.startsWith("out-"));
        return {
          same: JSON.stringify(ran.sort()) === JSON.stringify(present.sort()),
          internal: envelopes.some((e) => e.error?.error_type === "internal_error"),
        };
      });`),
    expect: {
      success: true,
      result: { same: true, internal: false },
      fuel: "any",
      files: { "data/keep.txt": "kept" },
    },
  },
];
