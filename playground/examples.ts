/** The languages the playground runs; run()'s `language` option. */
export type Language = "ts" | "py";

/** Tasks a visitor picks from; each shows one behaviour of the runtime. */
export interface Example {
  id: string;
  title: string;
  /** Default "ts". */
  language?: Language;
  args: string[];
  code: string;
}

export const EXAMPLES: readonly Example[] = [
  {
    id: "hello",
    title: "Hello",
    args: ["playground"],
    code: `import { task } from "@capsule-run/sdk";

export const main = task({ name: "main", compute: "LOW", ram: "64MB" }, (name: string): string => {
  console.log("running in a fresh sandbox");
  return \`Hello from Capsule, \${name}!\`;
});
`,
  },
  {
    id: "subtasks",
    title: "Sub-tasks",
    args: ["4"],
    code: `import { task } from "@capsule-run/sdk";

// Each call runs in a new sandbox with its own limits and fuel.
const square = task({ name: "square", compute: "MEDIUM" }, (n: number): number => {
  let spin = 0;
  for (let i = 0; i < 200_000; i++) spin += i % 3;
  console.log(\`square(\${n}) spun \${spin}\`);
  return n * n;
});

const total = task({ name: "total", compute: "LOW" }, (values: number[]): number =>
  values.reduce((sum, value) => sum + value, 0),
);

export const main = task({ name: "main", compute: "LOW", timeout: "20s" }, async (count: string) => {
  const numbers = Array.from({ length: Number(count) }, (_, i) => i + 1);
  // Promise.all runs the sub-tasks concurrently: see the timeline.
  const squares = await Promise.all(numbers.map((n) => square(n)));
  const values = squares.map((envelope) => envelope.result as number);
  const sum = await total(values);
  return { values, sum: sum.result };
});
`,
  },
  {
    id: "fetch",
    title: "Fetch with an allowlist",
    args: [],
    code: `import { task } from "@capsule-run/sdk";

export const main = task(
  { name: "main", compute: "LOW", timeout: "10s", allowedHosts: ["api.github.com"] },
  async () => {
    const attempt = async (url: string) => {
      try {
        const response = await fetch(url);
        return \`\${url}: \${response.status} \${(await response.text()).slice(0, 80)}\`;
      } catch (error) {
        return \`\${url}: \${error}\`;
      }
    };
    // The first host is listed; the second is not, so the runtime refuses it.
    return [await attempt("https://api.github.com/zen"), await attempt("https://example.com/")];
  },
);
`,
  },
  {
    id: "files",
    title: "Files (OPFS)",
    args: ["Written by a task in the playground."],
    code: `import { task } from "@capsule-run/sdk";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

// "./notes" is a directory in the page's Origin Private File System: see Files below.
export const main = task(
  { name: "main", compute: "LOW", allowedFiles: ["./notes"] },
  (text: string) => {
    writeFileSync("/notes/hello.txt", text);
    return { files: readdirSync("/notes"), content: readFileSync("/notes/hello.txt", "utf8") };
  },
);
`,
  },
  {
    id: "fuel",
    title: "Fuel exhaustion",
    args: [],
    code: `import { task } from "@capsule-run/sdk";

// LOW is 100 million units of fuel: this loop spends them, whatever the clock says.
export const main = task({ name: "main", compute: "LOW" }, () => {
  let n = 0;
  for (;;) n++;
});
`,
  },
  {
    id: "loop",
    title: "Infinite loop (timeout)",
    args: [],
    code: `import { task } from "@capsule-run/sdk";

// Fuel for minutes of spinning on any machine (1e12), so the wall clock ends it; the page stays
// responsive meanwhile.
export const main = task({ name: "main", compute: "1000000000000", timeout: "1s" }, () => {
  for (;;) {}
});
`,
  },
  {
    id: "memory",
    title: "Memory bomb",
    args: [],
    code: `import { task } from "@capsule-run/sdk";

// The sandbox's memory is capped; growing past it ends the task.
export const main = task({ name: "main", compute: "HIGH", ram: "16MB" }, () => {
  const hoard: string[] = [];
  for (let i = 0; ; i++) hoard.push("x".repeat(1024 * 1024) + i);
});
`,
  },
  {
    id: "retries",
    title: "Retries",
    args: [],
    code: `import { task } from "@capsule-run/sdk";

// A failed attempt reruns in a fresh sandbox, up to maxRetries times; nothing carries over.
const flaky = task({ name: "flaky", compute: "LOW", maxRetries: 2 }, () => {
  throw new Error("upstream unavailable");
});

export const main = task({ name: "main", compute: "LOW" }, async () => {
  // A sub-task's failure is its envelope, not an exception: main decides what to do.
  const outcome = await flaky();
  return { success: outcome.success, retries: outcome.execution.retries, error: outcome.error };
});
`,
  },
  {
    id: "hello-py",
    title: "Hello",
    language: "py",
    args: ["playground"],
    code: `from capsule import task


@task(name="main", compute="LOW", ram="64MB")
def main(name: str) -> str:
    print("running in a fresh sandbox")
    return f"Hello from Capsule, {name}!"
`,
  },
  {
    id: "subtasks-py",
    title: "Sub-tasks",
    language: "py",
    args: ["3"],
    code: `import asyncio

from capsule import task


@task(name="square", compute="LOW")
async def square(n: int) -> int:
    return n * n


@task(name="main", compute="LOW", timeout="60s")
async def main(count: str):
    # Each call runs in a new sandbox; asyncio.gather runs them at the same time: see the timeline.
    envelopes = await asyncio.gather(*(square(n) for n in range(1, int(count) + 1)))
    values = [envelope["result"] for envelope in envelopes]
    return {"values": values, "sum": sum(values)}
`,
  },
];

/** The examples in one language, in the order they are listed. */
export function examplesIn(language: Language): Example[] {
  return EXAMPLES.filter((example) => (example.language ?? "ts") === language);
}
