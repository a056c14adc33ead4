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
      "a sub-task finds nothing an earlier one left: no global, no prototype change, no secret in fresh memory",
    code: taskFile(`
      const SECRET = "capsule-secret-" + "7f3a9c1e".repeat(3);
      export const stash = task({ name: "stash" }, () => {
        (globalThis as any).leaked = SECRET;
        (Object.prototype as any).leakedToo = SECRET;
        const bytes = new TextEncoder().encode(SECRET.repeat(4096));
        (globalThis as any).kept = [SECRET.repeat(4096), bytes];
        return bytes.length;
      });
      export const snoop = task({ name: "snoop" }, () => {
        const found: string[] = [];
        if ("leaked" in globalThis || "kept" in globalThis) found.push("global");
        if (({} as any).leakedToo !== undefined) found.push("prototype");
        // Fresh allocations show whatever their memory held before, were it not cleared.
        const first = SECRET.charCodeAt(0);
        for (let round = 0; round < 4; round++) {
          const words = new Int32Array(1 << 16);
          let seen = 0;
          for (let i = 0; i < words.length; i++) seen |= words[i];
          if (seen !== 0) found.push("memory");
          const text = new Array(256).join(" ");
          if (text.charCodeAt(0) === first) found.push("string");
        }
        return found;
      });
      export const main = task({ name: "main" }, async () => {
        const stashed = await stash();
        const looks = [];
        for (let i = 0; i < 3; i++) looks.push((await snoop()).result);
        return { stashed: stashed.result, looks };
      });`),
    expect: {
      success: true,
      result: { stashed: 4096 * 39, looks: [[], [], []] },
      fuel: "exact",
    },
  },
];
