/**
 * The compile step against a hostile task given as code: every import that would read something
 * other than the SDK and the sandbox's Node built-ins is a compile_error naming it, on every host.
 * On Node the bundler runs on the host with its file access; pages and Workers have no disk, and
 * their module loader refuses the same imports.
 */
import { type Case, mainTask, taskFile } from "../case.ts";

const SECRET = "conformance-compile-secret";

/** The error names `specifier` and shows nothing of the file's content. */
const namesOnly = (specifier: string) =>
  `^(?![\\s\\S]*${SECRET})[\\s\\S]*${specifier.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`;

const importing = (line: string, use = "x") =>
  taskFile(`${line}\nexport const main = task({ name: "main" }, () => String(${use}));\n`);

const refused = (
  id: string,
  title: string,
  line: string,
  specifier: string,
  files?: Record<string, string>,
): Case => ({
  id,
  group: "escape",
  title,
  code: importing(line),
  ...(files ? { files } : {}),
  expect: { success: false, errorType: "compile_error", message: namesOnly(specifier) },
});

export const COMPILE_ATTACKS: Case[] = [
  refused(
    "compile-absolute-text-attribute",
    "an absolute path imported as text is a compile_error naming it",
    'import x from "/etc/passwd" with { type: "text" };',
    "/etc/passwd",
  ),
  refused(
    "compile-proc-environ",
    "the host's environment through /proc/self/environ is a compile_error",
    'import x from "/proc/self/environ" with { type: "text" };',
    "/proc/self/environ",
  ),
  refused(
    "compile-proc-environ-plain",
    "/proc/self/environ without an attribute is a compile_error too",
    'import x from "/proc/self/environ";',
    "/proc/self/environ",
  ),
  refused(
    "compile-file-url",
    "a file: URL import is a compile_error naming it",
    'import x from "file:///etc/hostname";',
    "file:///etc/hostname",
  ),
  refused(
    "compile-dotenv",
    "the project's .env imported as text is a compile_error that shows none of it",
    'import x from "./.env" with { type: "text" };',
    "./.env",
    { ".env": `TOKEN=${SECRET}\n` },
  ),
  refused(
    "compile-git-config",
    "the project's .git/config is a compile_error",
    'import x from "./.git/config";',
    "./.git/config",
    { ".git/config": `[remote "origin"]\n  url = https://${SECRET}@example.com/x.git\n` },
  ),
  refused(
    "compile-runtime-state",
    "a file in the runtime's own .capsule folder is a compile_error",
    'import x from "./.capsule/cache/entry.js";',
    "./.capsule/cache/entry.js",
    { ".capsule/cache/entry.js": `export default "${SECRET}";\n` },
  ),
  refused(
    "compile-outside-project",
    "a file outside the project is a compile_error",
    'import x from "../outside/secret.txt" with { type: "text" };',
    "../outside/secret.txt",
  ),
  refused(
    "compile-project-json",
    "a JSON data file of the project is a compile_error, with or without a json attribute",
    'import x from "./data.json" with { type: "json" };',
    "./data.json",
    { "data.json": JSON.stringify({ key: SECRET }) },
  ),
  refused(
    "compile-project-bytes",
    "a project file imported as bytes is a compile_error",
    'import x from "./blob.bin" with { type: "bytes" };',
    "./blob.bin",
    { "blob.bin": SECRET },
  ),
  refused(
    "compile-code-imports-module",
    "a task given as code imports no project module, even a TypeScript one",
    'import { x } from "./helper.ts";',
    "./helper.ts",
    { "helper.ts": `export const x = "${SECRET}";\n` },
  ),
  {
    id: "compile-dynamic-literal",
    group: "escape",
    title: "a dynamic import of a host file by a literal path is refused, at compile time on Node",
    code: taskFile(`export const main = task({ name: "main" }, async () => {
  try { return String((await import("/etc/passwd")).default); } catch (e) { return "refused"; }
});
`),
    expect: { success: true, result: "refused" },
    where: [
      {
        features: { host: "node" },
        expect: { success: false, errorType: "compile_error", message: namesOnly("/etc/passwd") },
        why: "Node bundles the task before it runs, and resolves an import by a literal path then",
      },
    ],
  },
  {
    id: "compile-computed-import",
    group: "escape",
    title: "an import by a computed path lists no directory, in the project or out of it",
    code: taskFile(`export const main = task({ name: "main" }, async (name = "passwd") => {
  try { return String((await import(\`../../../../../../etc/\${name}\`)).default); } catch (e) { return "refused"; }
});
`),
    files: { "data/a.txt": SECRET },
    expect: { success: true, result: "refused" },
    where: [
      {
        features: { host: "node" },
        expect: {
          success: false,
          errorType: "compile_error",
          message: `^(?![\\s\\S]*(${SECRET}|passwd))a task cannot import by a computed path`,
        },
        why: "Node bundles the task before it runs; esbuild would search directories for the match",
      },
    ],
  },
  {
    id: "state-capsule-out-of-reach",
    group: "escape",
    title: "under a writable grant of the whole project, .capsule can be neither read nor written",
    code: mainTask(
      `const fs = await import("node:fs");
  const code = (act: () => unknown) => { try { act(); return "done"; } catch (e) { return (e as { code?: string }).code; } };
  return [
    code(() => fs.readFileSync("/.capsule/cache/entry.json", "utf8")),
    code(() => fs.writeFileSync("/.capsule/cache/planted.json", "{}")),
    code(() => fs.writeFileSync("/sub/../.capsule/cache/entry.json", "{}")),
    code(() => fs.readdirSync(".capsule")),
  ];`,
      '{ name: "main", allowedFiles: ["."] }',
    ),
    files: { ".capsule/cache/entry.json": "{}", "data/x.txt": "x" },
    expect: {
      success: true,
      result: ["EACCES", "EACCES", "EACCES", "EACCES"],
      files: { ".capsule/cache/planted.json": null, ".capsule/cache/entry.json": "{}" },
    },
  },
  {
    id: "state-capsule-grant",
    group: "escape",
    title: "an allowedFiles entry naming .capsule is a config_error naming it",
    code: mainTask(`return "ran";`, '{ name: "main", allowedFiles: ["./data/../.capsule"] }'),
    files: { ".capsule/cache/entry.json": "{}", "data/x.txt": "x" },
    expect: {
      success: false,
      errorType: "config_error",
      message: "allowedFiles\\[0\\].*\\.capsule",
    },
  },
  {
    id: "state-capsule-python",
    group: "escape",
    title: "a Python task cannot open a .capsule folder inside its writable grant either",
    language: "py",
    code: `import errno
from capsule import task

@task(name="main", allowed_files=["./sub"])
def main():
    codes = []
    for path, mode in [("sub/.capsule/cache/entry.json", "r"), ("/sub/.capsule/cache/planted.json", "w")]:
        try:
            with open(path, mode) as file:
                file.write("{}") if mode == "w" else file.read()
            codes.append("done")
        except OSError as error:
            codes.append(errno.errorcode[error.errno])
    return codes
`,
    files: { "sub/.capsule/cache/entry.json": "{}" },
    expect: {
      success: true,
      result: ["EACCES", "EACCES"],
      files: { "sub/.capsule/cache/planted.json": null },
    },
    where: [
      {
        features: { python: "unavailable" },
        expect: { success: false, refused: true, message: "not supported" },
        why: "the host declares no Python tasks",
      },
      {
        features: { python: "opaque-origin-worker" },
        expect: {
          success: true,
          result: ["EACCES", "EACCES"],
          files: { "sub/.capsule/cache/planted.json": null },
          fuel: "any",
        },
        why: "a page enters Python with stack switching, Node without: other allocations, other fuel",
      },
    ],
  },
  {
    id: "compile-engine-syntax-error",
    group: "bad-input",
    title:
      "a regular expression literal the engine cannot compile is a compile_error, not the runtime's fault",
    code: mainTask(`const pattern = /(unclosed/;\nreturn String(pattern);`),
    expect: { success: false, errorType: "compile_error", message: "expecting '\\)'" },
  },
];
