/**
 * Attacks on sandbox copies (core/runtime/template.ts): a task that looks for what an earlier
 * task on the same host left behind. Every sub-task runs in a sandbox of its own, a copy of a
 * recorded one where the host makes copies; none of it may show the earlier task's secret.
 */
import { type Case, taskFile } from "../case.ts";

export const REUSE_ATTACKS: Case[] = [
  {
    id: "escape-earlier-sandbox-secret",
    group: "escape",
    title:
      "a sub-task finds nothing an earlier one left: no global, no prototype change, not its Math.random sequence",
    // Memory itself is not probed here: JavaScript clears what it allocates, so no guest read
    // could show old bytes; core/runtime/template.test.ts compares a copy's memory byte by byte.
    // What a guest can see is state: globals, prototypes (built in, and those of the built-ins
    // compiled on first use, which a copy starts with as the recorded sandbox left them, in its
    // own memory) and the seed of Math.random, which a copy would repeat were it not reseeded.
    code: taskFile(`
      const SECRET = "capsule-secret-" + "7f3a9c1e".repeat(3);
      // Draws as whole numbers of four digits, compared as numbers: fuel follows the text and
      // the branches a value takes, so nothing here may depend on which numbers were drawn.
      const draws = () => [0, 1, 2, 3, 4, 5].map(() => 1024 + ((Math.random() * 1024) | 0));
      export const stash = task({ name: "stash" }, () => {
        (globalThis as any).leaked = SECRET;
        (Object.prototype as any).leakedToo = SECRET;
        (URL.prototype as any).leakedToo = SECRET;
        (TextEncoder.prototype as any).leakedToo = SECRET;
        (globalThis as any).kept = [SECRET.repeat(4096), new TextEncoder().encode(SECRET)];
        return draws();
      });
      export const snoop = task({ name: "snoop" }, () => {
        const found: string[] = [];
        if ("leaked" in globalThis || "kept" in globalThis) found.push("global");
        if (({} as any).leakedToo !== undefined) found.push("prototype");
        if ((new URL("https://example.com/") as any).leakedToo !== undefined) found.push("URL");
        if ((new TextEncoder() as any).leakedToo !== undefined) found.push("TextEncoder");
        return { found, draws: draws() };
      });
      export const main = task({ name: "main" }, async () => {
        const sequences: number[][] = [(await stash()).result];
        const looks = [];
        for (let i = 0; i < 3; i++) {
          const { found, draws } = (await snoop()).result;
          looks.push(found);
          sequences.push(draws);
        }
        // Pairs of sub-tasks that drew the same six numbers (about 1 in 2^60 if seeded apart).
        let repeated = 0;
        for (let a = 0; a < sequences.length; a++) {
          for (let b = a + 1; b < sequences.length; b++) {
            let same = 0;
            for (let i = 0; i < 6; i++) same += Number(sequences[a][i] === sequences[b][i]);
            repeated += Number(same === 6);
          }
        }
        return { looks, repeated };
      });`),
    expect: {
      success: true,
      result: { looks: [[], [], []], repeated: 0 },
      fuel: "exact",
    },
  },
  workLeftRunning({
    id: "escape-timers-left-running",
    title:
      "a sub-task that ends with timers and an interval pending reaches none of the sub-tasks after it",
    leftPending: "",
    fuel: "exact",
  }),
  workLeftRunning({
    id: "escape-fetch-left-running",
    title:
      "a sub-task that ends with a fetch's body still arriving reaches none of the sub-tasks after it",
    // The body trickles for longer than every sub-task after this one takes.
    leftPending: `fetch("{{SERVER}}/slow").then((r) => r.text()).then(late("fetch"), late("fetch failed"));`,
    // When the reply's headers reach the sandbox, before its end or after, depends on timing.
    fuel: "any",
  }),
];

/**
 * A sub-task that leaves work pending at its end (timers at several delays, an interval, a timer
 * set from a microtask, and `leftPending`), then sub-tasks that look for it. The sandbox of a
 * sub-task that ended is fenced and its memory may serve the next one (core/engine/memory-shelf.ts):
 * what it left must never run, in it or in the next.
 */
function workLeftRunning(options: {
  id: string;
  title: string;
  leftPending: string;
  fuel: "exact" | "any";
}): Case {
  return {
    id: options.id,
    group: "escape",
    title: options.title,
    code: taskFile(`
      const SECRET = "capsule-secret-" + "5e1b0d2a".repeat(3);
      export const leave = task({ name: "leave", allowedHosts: ["127.0.0.1"] }, () => {
        (globalThis as any).kept = SECRET.repeat(1024);
        const late = (why: string) => () => {
          (globalThis as any).late = SECRET + why;
          (Object.prototype as any).lateToo = SECRET;
          console.log("late: " + why);
        };
        for (const ms of [0, 1, 20, 60, 150]) setTimeout(late("timer " + ms), ms);
        setInterval(late("interval"), 5);
        queueMicrotask(() => setTimeout(late("from a microtask"), 30));
        ${options.leftPending}
        return "left";
      });
      export const snoop = task({ name: "snoop" }, async () => {
        await new Promise((resolve) => setTimeout(resolve, 40));
        const found: string[] = [];
        if ("kept" in globalThis || "late" in globalThis) found.push("global");
        if (({} as any).lateToo !== undefined) found.push("prototype");
        return found;
      });
      export const main = task({ name: "main" }, async () => {
        const left = (await leave()).result;
        const looks = [];
        for (let i = 0; i < 6; i++) looks.push((await snoop()).result);
        return { left, looks };
      });`),
    expect: {
      success: true,
      result: { left: "left", looks: [[], [], [], [], [], []] },
      fuel: options.fuel,
    },
  };
}
