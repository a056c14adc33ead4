/**
 * Conformance: what a task can do, run the same on every host. Each case states its outcome; fuel
 * is exact (fuel.json) unless it depends on wall time or on bytes from the network.
 */
import { type Case, mainTask, taskFile } from "./case.ts";
import { PYTHON_CASES } from "./python.ts";

const DATA = { "data/in.txt": "alpha beta gamma\n" };
const readWrite = `{ name: "main", allowedFiles: ["data"] }`;
const readOnly = `{ name: "main", allowedFiles: [{ path: "data", mode: "read-only" }] }`;
const network = `{ name: "main", allowedHosts: ["127.0.0.1"] }`;

export const CONFORMANCE_CASES: Case[] = [
  {
    id: "hello",
    group: "basics",
    title: "a hello task returns its string",
    code: mainTask(`return "Hello from Capsule!";`),
    expect: { success: true, result: "Hello from Capsule!" },
  },
  {
    id: "args",
    group: "basics",
    title: "args arrive as positional strings",
    code: mainTask(`return { count: args.length, joined: args.join("|") };`),
    args: ["one", "", "ünï €", "3"],
    expect: { success: true, result: { count: 4, joined: "one||ünï €|3" } },
  },
  {
    id: "json-result",
    group: "basics",
    title: "a structured result comes back as JSON, unicode and numbers intact",
    code: mainTask(
      `return { list: [1, 2.5, -0, 1e21], nested: { ok: true, none: null }, text: "日本 🌍 \\u0000 end", missing: undefined };`,
    ),
    expect: {
      success: true,
      result: {
        list: [1, 2.5, 0, 1e21],
        nested: { ok: true, none: null },
        text: "日本 🌍 \u0000 end",
      },
    },
  },
  {
    id: "javascript",
    group: "basics",
    title: "a plain JavaScript task file runs without a compiler",
    language: "js",
    code: taskFile(`export const main = task({ name: "main" }, (n) => Number(n) * 2);`),
    args: ["21"],
    expect: { success: true, result: 42 },
  },
  {
    id: "typescript-types",
    group: "basics",
    title: "TypeScript-only syntax (interfaces, enums, generics, casts) is stripped",
    code: taskFile(`
      interface Point { x: number; y: number }
      enum Color { Red = 1, Green = 2 }
      function first<T>(items: T[]): T | undefined { return items[0]; }
      export const main = task({ name: "main" }, (): number => {
        const point = { x: 2, y: 3 } as Point;
        return point.x * point.y + Color.Green + (first<number>([10]) ?? 0);
      });`),
    expect: { success: true, result: 18 },
  },
  {
    id: "named-task",
    group: "basics",
    title: "the task option picks a task by name",
    code: taskFile(`
      export const main = task({ name: "main" }, () => "main");
      export const other = task({ name: "other_task" }, () => "other");`),
    task: "other_task",
    expect: { success: true, result: "other" },
  },
  {
    id: "task-error",
    group: "basics",
    title: "a thrown Error is a task_error with its message and the task file's line",
    code: mainTask(`\nthrow new Error("broken on purpose");`),
    expect: { success: false, errorType: "task_error", message: "broken on purpose" },
  },
  {
    id: "throw-value",
    group: "basics",
    title: "a thrown non-Error value is a task_error too",
    code: mainTask(`throw { code: 7 };`),
    expect: { success: false, errorType: "task_error", message: "7" },
  },
  {
    id: "compile-error",
    group: "basics",
    title: "a syntax error is a compile_error naming the line",
    code: mainTask(`const = 1;`),
    expect: { success: false, errorType: "compile_error", message: ":3" },
  },
  {
    id: "retries",
    group: "basics",
    title: "a failing task is retried maxRetries times, each in a fresh sandbox",
    code: mainTask(
      `(globalThis as any).seen = ((globalThis as any).seen ?? 0) + 1; throw new Error("attempt saw " + (globalThis as any).seen);`,
      `{ name: "main", maxRetries: 2 }`,
    ),
    expect: {
      success: false,
      errorType: "task_error",
      message: "attempt saw 1",
      retries: 2,
    },
  },
  {
    id: "subtask",
    group: "basics",
    title: "a sub-task runs in a new sandbox and resolves to its envelope",
    code: taskFile(`
      export const double = task({ name: "double", compute: "LOW" }, (n: number) => n * 2);
      export const main = task({ name: "main" }, async () => {
        const envelope = await double(21);
        return { success: envelope.success, result: envelope.result, name: envelope.execution.task_name };
      });`),
    expect: { success: true, result: { success: true, result: 42, name: "double" } },
  },
  {
    id: "subtasks-sequential",
    group: "basics",
    title: "sub-tasks awaited one at a time spend the same fuel on every host",
    code: taskFile(`
      export const square = task({ name: "square" }, (n: number) => {
        if (n === 3) throw new Error("three is refused");
        return n * n;
      });
      export const main = task({ name: "main" }, async () => {
        const out: unknown[] = [];
        for (const n of [1, 2, 3, 4]) {
          const e = await square(n);
          out.push(e.success ? e.result : e.error?.error_type);
        }
        return out;
      });`),
    expect: { success: true, result: [1, 4, "task_error", 16] },
  },
  {
    id: "subtasks-concurrent",
    group: "basics",
    // Fuel: the engine's Promise.all does a little more work when results come back out of
    // order, and the order concurrent sub-tasks finish in is the host scheduler's.
    title: "sub-tasks started together all finish, failures included",
    code: taskFile(`
      export const square = task({ name: "square" }, (n: number) => {
        if (n === 3) throw new Error("three is refused");
        return n * n;
      });
      export const main = task({ name: "main" }, async () => {
        const envelopes = await Promise.all([1, 2, 3, 4].map((n) => square(n)));
        return envelopes.map((e) => e.success ? e.result : e.error?.error_type);
      });`),
    expect: { success: true, result: [1, 4, "task_error", 16], fuel: "any" },
  },
  {
    id: "fuel-exhausted",
    group: "limits",
    title: "a loop past its compute budget ends as fuel_exhausted",
    code: mainTask(`let n = 0; for (;;) n++;`, `{ name: "main", compute: "2000000" }`),
    expect: { success: false, errorType: "fuel_exhausted" },
  },
  {
    id: "memory-exceeded",
    group: "limits",
    title: "allocating past ram ends as memory_exceeded",
    code: mainTask(
      `const keep: string[] = []; for (let i = 0; ; i++) keep.push("x".repeat(1 << 20) + i);`,
      `{ name: "main", ram: "32MB" }`,
    ),
    expect: { success: false, errorType: "memory_exceeded" },
  },
  {
    id: "timeout",
    group: "limits",
    title: "a busy loop is stopped at its timeout",
    code: mainTask(`for (;;) {}`, `{ name: "main", compute: "HIGH", timeout: "300ms" }`),
    expect: { success: false, errorType: "timeout", fuel: "any" },
  },
  {
    id: "bad-option",
    group: "limits",
    title: "a bad task option is a config_error naming it",
    code: mainTask(`return 1;`, `{ name: "main", ram: "lots" }`),
    expect: { success: false, errorType: "config_error", message: "ram" },
  },
  {
    id: "env",
    group: "basics",
    title: "process.env holds exactly the listed variables the host has",
    code: mainTask(
      `return { keys: Object.keys(process.env).sort(), token: process.env.API_TOKEN ?? null };`,
      `{ name: "main", envVariables: ["API_TOKEN", "NOT_SET"] }`,
    ),
    env: { API_TOKEN: "t0k3n", SECRET: "never seen" },
    expect: { success: true, result: { keys: ["API_TOKEN"], token: "t0k3n" } },
  },
  {
    id: "built-ins",
    group: "basics",
    title: "URL, TextEncoder, Buffer and structuredClone behave as on Node",
    code: mainTask(`
      const url = new URL("https://example.com/a/../b?q=1#h");
      const bytes = new TextEncoder().encode("é");
      const clone = structuredClone({ when: new Date(0), set: new Set([1]) });
      return {
        href: url.href,
        bytes: Array.from(bytes),
        base64: Buffer.from("capsule").toString("base64"),
        clone: [clone.when.toISOString(), clone.set.has(1)],
      };`),
    expect: {
      success: true,
      result: {
        href: "https://example.com/b?q=1#h",
        bytes: [195, 169],
        base64: "Y2Fwc3VsZQ==",
        clone: ["1970-01-01T00:00:00.000Z", true],
      },
    },
  },
  {
    id: "console",
    group: "basics",
    title: "console output does not change the result",
    code: mainTask(`console.log("to the log", { a: 1 }); console.error("err"); return "done";`),
    expect: { success: true, result: "done" },
  },
  {
    id: "files-read",
    group: "files",
    title: "a granted file is read, as text and as bytes",
    code: taskFile(`import fs from "node:fs";
      export const main = task(${readOnly}, () => {
        const text = fs.readFileSync("data/in.txt", "utf8");
        return { text, bytes: fs.readFileSync("./data/in.txt").length };
      });`),
    files: DATA,
    expect: { success: true, result: { text: "alpha beta gamma\n", bytes: 17 } },
  },
  {
    id: "files-write",
    group: "files",
    title: "files are written, appended, listed and removed in a writable grant",
    code: taskFile(`import fs from "node:fs/promises";
      export const main = task(${readWrite}, async () => {
        await fs.mkdir("data/sub/deeper", { recursive: true });
        await fs.writeFile("data/out.txt", "first");
        await fs.appendFile("data/out.txt", " second");
        await fs.writeFile("data/sub/gone.txt", "x");
        await fs.rm("data/sub/gone.txt");
        const entries = await fs.readdir("data", { withFileTypes: true });
        return entries.map((e) => [e.name, e.isDirectory()]).sort();
      });`),
    files: DATA,
    expect: {
      success: true,
      result: [
        ["in.txt", false],
        ["out.txt", false],
        ["sub", true],
      ],
      files: { "data/out.txt": "first second", "data/sub/gone.txt": null },
    },
  },
  {
    id: "files-remove-existing",
    group: "files",
    title: "a file and a directory that were there before the task are gone once it removes them",
    code: taskFile(`import fs from "node:fs/promises";
      export const main = task(${readWrite}, async () => {
        await fs.rm("data/in.txt");
        await fs.rm("data/old", { recursive: true });
        return (await fs.readdir("data")).sort();
      });`),
    files: { ...DATA, "data/old/inner.txt": "old" },
    expect: {
      success: true,
      result: [],
      files: { "data/in.txt": null, "data/old/inner.txt": null },
    },
  },
  {
    id: "files-errors",
    group: "files",
    title: "file errors carry Node's codes: ENOENT, EISDIR, EROFS",
    code: taskFile(`import fs from "node:fs";
      const code = (f: () => unknown) => { try { f(); return "ok"; } catch (e) { return (e as NodeJS.ErrnoException).code; } };
      export const main = task(${readOnly}, () => [
        code(() => fs.readFileSync("data/missing.txt")),
        code(() => fs.readFileSync("data")),
        code(() => fs.writeFileSync("data/in.txt", "changed")),
      ]);`),
    files: DATA,
    expect: {
      success: true,
      result: ["ENOENT", "EISDIR", "EROFS"],
      files: { "data/in.txt": "alpha beta gamma\n" },
    },
  },
  {
    id: "files-error-messages",
    group: "files",
    title: "file errors carry the same code, syscall, path and message on every host",
    code: taskFile(`import fs from "node:fs";
      const attempt = (f: () => unknown) => {
        try { f(); return "ok"; }
        catch (e) { const x = e as NodeJS.ErrnoException; return [x.code, x.syscall, x.path, x.message].join(" | "); }
      };
      export const main = task(${readWrite}, () => [
        attempt(() => fs.statSync("data/none")),
        attempt(() => fs.lstatSync("data/none/deeper")),
        attempt(() => fs.readFileSync("data")),
        attempt(() => fs.mkdirSync("data")),
        attempt(() => fs.mkdirSync("data/a/b")),
        attempt(() => fs.rmdirSync("data")),
        attempt(() => fs.unlinkSync("data")),
        attempt(() => fs.readdirSync("data/in.txt")),
        attempt(() => fs.renameSync("data/none", "data/other")),
        attempt(() => fs.copyFileSync("data/in.txt", "data/in.txt", fs.constants.COPYFILE_EXCL)),
        attempt(() => fs.openSync("data/none", "r")),
        attempt(() => fs.writeFileSync("data/in.txt/child", "x")),
        attempt(() => fs.readlinkSync("data/in.txt")),
      ]);`),
    files: DATA,
    expect: {
      success: true,
      result: [
        "ENOENT | stat | data/none | ENOENT: no such file or directory, stat 'data/none'",
        "ENOENT | lstat | data/none/deeper | ENOENT: no such file or directory, lstat 'data/none/deeper'",
        "EISDIR | read | data | EISDIR: illegal operation on a directory, read 'data'",
        "EEXIST | mkdir | data | EEXIST: file already exists, mkdir 'data'",
        "ENOENT | mkdir | data/a/b | ENOENT: no such file or directory, mkdir 'data/a/b'",
        "EACCES | rmdir | data | EACCES: an allowed directory itself cannot be moved or removed, rmdir 'data'",
        "EISDIR | unlink | data | EISDIR: illegal operation on a directory, unlink 'data'",
        "ENOTDIR | scandir | data/in.txt | ENOTDIR: not a directory, scandir 'data/in.txt'",
        "ENOENT | rename | data/none | ENOENT: no such file or directory, rename 'data/none'",
        "EEXIST | copyfile | data/in.txt | EEXIST: file already exists, copyfile 'data/in.txt'",
        "ENOENT | open | data/none | ENOENT: no such file or directory, open 'data/none'",
        "ENOTDIR | open | data/in.txt/child | ENOTDIR: not a directory, open 'data/in.txt/child'",
        "EINVAL | readlink | data/in.txt | EINVAL: invalid argument, readlink 'data/in.txt'",
      ],
    },
  },
  {
    id: "fetch-text",
    group: "network",
    title: "fetch reads text and JSON from a listed host",
    code: mainTask(
      `const text = await (await fetch("{{SERVER}}/text")).text();
       const echo = await fetch("{{SERVER}}/echo", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ n: 1 }) });
       return { text, status: echo.status, json: await echo.json() };`,
      network,
    ),
    expect: { success: true, result: { text: "hello", status: 200, json: { n: 1 } }, fuel: "any" },
  },
  {
    id: "fetch-binary",
    group: "network",
    title: "binary bodies cross the bridge both ways intact",
    code: mainTask(
      `const got = new Uint8Array(await (await fetch("{{SERVER}}/bytes")).arrayBuffer());
       const sent = await fetch("{{SERVER}}/echo", { method: "POST", body: got });
       const back = new Uint8Array(await sent.arrayBuffer());
       return { length: back.length, same: back.every((b, i) => b === i) };`,
      network,
    ),
    expect: { success: true, result: { length: 256, same: true }, fuel: "any" },
  },
  {
    id: "fetch-denied",
    group: "network",
    title: "an unlisted host is a TypeError the task can catch",
    code: mainTask(
      `try { await fetch("https://example.com/"); return "fetched"; } catch (e) { return (e as Error).name + ": " + /not in allowedHosts|not allowed/.test((e as Error).message); }`,
      network,
    ),
    expect: { success: true, result: "TypeError: true" },
  },
  ...PYTHON_CASES,
];
