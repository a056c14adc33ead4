/**
 * Attacks on the disk a task writes: the run's write quota (bytes and entries, across sub-tasks
 * and attempts, refused whole with ENOSPC before anything reaches the disk, OPFS or a Worker's
 * files), names no store can hold, and Node's answers for a trailing slash.
 */
import { type Case, taskFile } from "../case.ts";

const DATA = { "data/in.txt": "inside\n" };
const readWrite = `{ name: "main", allowedFiles: ["data"] }`;

/** A task file whose `main` runs `body` with node:fs in scope. */
const fsTask = (body: string, options = readWrite, before = ""): string =>
  taskFile(`import fs from "node:fs";
${before}
export const main = task(${options}, async () => {
${body}
});
`);

const CHUNK = "0123456789abcdef";

export const FILES_ATTACKS: Case[] = [
  {
    id: "files-quota-append-loop",
    group: "denial-of-service",
    title: "an appendFile loop stops at the run's write quota with ENOSPC; the file holds no more",
    code: fsTask(`let n = 0;
      try { for (;;) { fs.appendFileSync("data/out.txt", ${JSON.stringify(CHUNK)}); n++; } }
      catch (e) { return [n, (e as NodeJS.ErrnoException).code, fs.statSync("data/out.txt").size]; }`),
    files: DATA,
    limits: { writeBytes: 1000 },
    expect: {
      success: true,
      result: [62, "ENOSPC", 992],
      files: { "data/out.txt": CHUNK.repeat(62) },
    },
  },
  {
    id: "files-quota-many-empty-files",
    group: "denial-of-service",
    title: "empty files count against the run's entry quota (limits.writeFiles)",
    code: fsTask(`let n = 0;
      try { for (;;) { fs.writeFileSync("data/f" + n + ".txt", ""); n++; } }
      catch (e) { return [n, (e as NodeJS.ErrnoException).code, fs.readdirSync("data").length]; }`),
    files: DATA,
    limits: { writeFiles: 40 },
    expect: {
      success: true,
      result: [40, "ENOSPC", 41],
      files: { "data/f39.txt": "", "data/f40.txt": null },
    },
  },
  {
    id: "files-quota-copy-amplification",
    group: "denial-of-service",
    title: "copyFile is charged the bytes it duplicates on the host",
    code: fsTask(`fs.writeFileSync("data/src.txt", "y".repeat(600));
      let n = 0;
      try { for (;;) { fs.copyFileSync("data/src.txt", "data/c" + n + ".txt"); n++; } }
      catch (e) { return [n, (e as NodeJS.ErrnoException).code]; }`),
    files: DATA,
    limits: { writeBytes: 2000 },
    expect: {
      success: true,
      result: [2, "ENOSPC"],
      files: { "data/c1.txt": "y".repeat(600), "data/c2.txt": null },
    },
  },
  {
    id: "files-quota-overwrite-counts",
    group: "denial-of-service",
    title: "overwriting one file charges every byte written, not the file's growth",
    code: fsTask(`let n = 0;
      try { for (;;) { fs.writeFileSync("data/same.txt", String(n).repeat(1000)); n++; } }
      catch (e) { return [n, (e as NodeJS.ErrnoException).code]; }`),
    files: DATA,
    limits: { writeBytes: 3500 },
    expect: { success: true, result: [3, "ENOSPC"], files: { "data/same.txt": "2".repeat(1000) } },
  },
  {
    id: "files-quota-subtasks-share",
    group: "denial-of-service",
    title: "a parent and its sub-task draw on one quota for the run, in both directions",
    code: fsTask(
      `const code = (f: () => void) => { try { f(); return "written"; } catch (e) { return (e as NodeJS.ErrnoException).code; } };
      const first = code(() => fs.writeFileSync("data/parent.txt", "p".repeat(400)));
      const child = (await fill()).result;
      const second = code(() => fs.writeFileSync("data/parent2.txt", "q".repeat(300)));
      return [first, child, second];`,
      readWrite,
      `export const fill = task({ name: "fill", allowedFiles: ["data"] }, async () => {
        try { fs.writeFileSync("data/child.txt", "c".repeat(400)); return "written"; }
        catch (e) { return (e as NodeJS.ErrnoException).code; }
      });`,
    ),
    files: DATA,
    limits: { writeBytes: 1000 },
    expect: {
      success: true,
      result: ["written", "written", "ENOSPC"],
      files: { "data/child.txt": "c".repeat(400), "data/parent2.txt": null },
    },
  },
  {
    id: "files-quota-across-retries",
    group: "denial-of-service",
    title: "a retried attempt draws on what the failed attempt already wrote",
    code: fsTask(
      `if (!fs.existsSync("data/try1.txt")) {
        fs.writeFileSync("data/try1.txt", "1".repeat(600));
        throw new Error("first attempt fails");
      }
      try { fs.writeFileSync("data/try2.txt", "2".repeat(600)); return "written"; }
      catch (e) { return (e as NodeJS.ErrnoException).code; }`,
      `{ name: "main", allowedFiles: ["data"], maxRetries: 1 }`,
    ),
    files: DATA,
    limits: { writeBytes: 1000 },
    expect: { success: true, result: "ENOSPC", retries: 1, files: { "data/try2.txt": null } },
  },
  {
    id: "files-quota-write-past-end",
    group: "denial-of-service",
    title: "a write far past the end of a file is charged the zeros it fills in",
    code: fsTask(`const fd = fs.openSync("data/sparse.bin", "w");
      let code = "written";
      try { fs.writeSync(fd, Buffer.from("x"), 0, 1, 5000); }
      catch (e) { code = (e as NodeJS.ErrnoException).code ?? "?"; }
      fs.closeSync(fd);
      return [code, fs.statSync("data/sparse.bin").size];`),
    files: DATA,
    limits: { writeBytes: 1000 },
    expect: { success: true, result: ["ENOSPC", 0] },
  },
  {
    id: "files-quota-mkdir-recursive",
    group: "denial-of-service",
    title: "mkdir -p counts each directory it would make, and makes none past the quota",
    code: fsTask(`try { fs.mkdirSync("data/a/b/c/d", { recursive: true }); return "made"; }
      catch (e) { return [(e as NodeJS.ErrnoException).code, fs.existsSync("data/a")]; }`),
    files: DATA,
    limits: { writeFiles: 3 },
    expect: { success: true, result: ["ENOSPC", false] },
  },
  {
    id: "files-quota-rename-free",
    group: "files",
    title: "renaming moves what exists and costs nothing against the quota",
    code: fsTask(`fs.writeFileSync("data/a.txt", "moved");
      for (let i = 0; i < 100; i++) { fs.renameSync("data/a.txt", "data/b.txt"); fs.renameSync("data/b.txt", "data/a.txt"); }
      return fs.readFileSync("data/a.txt", "utf8");`),
    files: DATA,
    limits: { writeBytes: 10, writeFiles: 1 },
    expect: {
      success: true,
      result: "moved",
      files: { "data/a.txt": "moved", "data/b.txt": null },
    },
  },
  {
    id: "files-quota-error-shape",
    group: "denial-of-service",
    title: "ENOSPC has Node's shape and names the limit to raise; nothing of the write lands",
    code: fsTask(`try { fs.writeFileSync("data/big.txt", "z".repeat(11)); return "written"; }
      catch (e) {
        const error = e as NodeJS.ErrnoException;
        return [error.code, error.errno, error.syscall, /limits\\.writeBytes/.test(error.message), fs.existsSync("data/big.txt")];
      }`),
    files: DATA,
    limits: { writeBytes: 10 },
    expect: { success: true, result: ["ENOSPC", -28, "open", true, false] },
  },
  {
    id: "files-quota-uncaught",
    group: "denial-of-service",
    title: "an uncaught ENOSPC fails the task as its own error, not a denial or the runtime's",
    code: fsTask(`fs.writeFileSync("data/big.txt", "z".repeat(2000));`),
    files: DATA,
    limits: { writeBytes: 1000 },
    expect: {
      success: false,
      errorType: "task_error",
      message: "ENOSPC",
      files: { "data/big.txt": null },
    },
  },
  {
    id: "files-lone-surrogate-name",
    group: "files",
    title: "a name with a lone surrogate is refused with EINVAL, so it cannot merge with U+FFFD",
    code: fsTask(`const out: unknown[] = [];
      const attempt = (f: () => void) => { try { f(); out.push("done"); } catch (e) { out.push((e as NodeJS.ErrnoException).code); } };
      attempt(() => fs.writeFileSync("data/\\uD800", "lone high"));
      attempt(() => fs.writeFileSync("data/x\\uDC00y.txt", "lone low"));
      attempt(() => fs.writeFileSync("data/\\uFFFD", "replacement"));
      attempt(() => fs.mkdirSync("data/\\uDBFF"));
      attempt(() => fs.renameSync("data/in.txt", "data/\\uD800.txt"));
      attempt(() => fs.writeFileSync("data/\\uD83D\\uDE00.txt", "a pair is fine"));
      out.push(fs.readdirSync("data").length, fs.readFileSync("data/\\uFFFD", "utf8"));
      return out;`),
    files: DATA,
    expect: {
      success: true,
      result: ["EINVAL", "EINVAL", "done", "EINVAL", "EINVAL", "done", 3, "replacement"],
      files: { "data/in.txt": "inside\n" },
    },
  },
  {
    id: "files-trailing-slash",
    group: "files",
    title: "a trailing slash on a file is ENOTDIR (EISDIR where it would create one), as on Node",
    code: fsTask(`const t = (f: () => unknown) => { try { f(); return "ok"; } catch (e) { return (e as NodeJS.ErrnoException).code; } };
      return [
        t(() => fs.readFileSync("data/in.txt/")),
        t(() => fs.statSync("data/in.txt/")),
        t(() => fs.lstatSync("data/in.txt/")),
        t(() => fs.writeFileSync("data/in.txt/", "x")),
        t(() => fs.writeFileSync("data/new.txt/", "x")),
        t(() => fs.openSync("data/in.txt/", "r")),
        t(() => fs.copyFileSync("data/in.txt/", "data/copy.txt")),
        t(() => fs.unlinkSync("data/in.txt/")),
        t(() => fs.renameSync("data/in.txt", "data/moved/")),
        t(() => fs.readdirSync("data/")),
        t(() => fs.statSync("data/.")),
        fs.readFileSync("data/in.txt", "utf8"),
      ];`),
    files: DATA,
    expect: {
      success: true,
      result: [
        "ENOTDIR",
        "ENOTDIR",
        "ENOTDIR",
        "EISDIR",
        "EISDIR",
        "ENOTDIR",
        "ENOTDIR",
        "ENOTDIR",
        "ENOTDIR",
        "ok",
        "ok",
        "inside\n",
      ],
      files: { "data/in.txt": "inside\n", "data/new.txt": null, "data/copy.txt": null },
    },
  },
];
