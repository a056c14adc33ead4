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
];
