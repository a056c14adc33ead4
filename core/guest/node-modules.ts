/**
 * The Node built-in modules a task may import, and the tiny ES modules a task compiler substitutes
 * for them: each re-exports the guest's implementation (`__capsule.require(chunk)`) under its full
 * static list of names, so default, namespace and named imports (and `require` from CommonJS
 * packages) all bind. node-modules.test.ts checks these lists against the guest's real modules.
 */
import type { NodeModuleChunk } from "./chunk.ts";
import { FS_UNAVAILABLE } from "./fs-unavailable.ts";

const FS_PROMISES = [
  "readFile",
  "writeFile",
  "appendFile",
  "readdir",
  "stat",
  "lstat",
  "access",
  "mkdir",
  "rm",
  "rmdir",
  "unlink",
  "rename",
  "copyFile",
  "symlink",
  "readlink",
  "open",
  "constants",
  ...FS_UNAVAILABLE,
];

const FS = [
  "readFileSync",
  "writeFileSync",
  "appendFileSync",
  "readdirSync",
  "statSync",
  "lstatSync",
  "existsSync",
  "accessSync",
  "mkdirSync",
  "rmSync",
  "rmdirSync",
  "unlinkSync",
  "renameSync",
  "copyFileSync",
  "symlinkSync",
  "readlinkSync",
  "openSync",
  "readSync",
  "writeSync",
  "closeSync",
  "fstatSync",
  ...FS_PROMISES.filter((name) => !FS_UNAVAILABLE.includes(name)),
  "close",
  "fstat",
  "read",
  "write",
  "exists",
  "promises",
  "Stats",
  "Dirent",
  "F_OK",
  "R_OK",
  "W_OK",
  "X_OK",
  "createReadStream",
  "createWriteStream",
  "watch",
  "watchFile",
  "unwatchFile",
  ...FS_UNAVAILABLE.flatMap((name) => [name, `${name}Sync`]),
];

const PATH = [
  "sep",
  "delimiter",
  "resolve",
  "normalize",
  "isAbsolute",
  "join",
  "relative",
  "toNamespacedPath",
  "dirname",
  "basename",
  "extname",
  "format",
  "parse",
  "posix",
];

const PROCESS = [
  "env",
  "argv",
  "argv0",
  "execArgv",
  "title",
  "platform",
  "arch",
  "version",
  "versions",
  "release",
  "pid",
  "ppid",
  "exitCode",
  "stdout",
  "stderr",
  "cwd",
  "chdir",
  "exit",
  "abort",
  "nextTick",
  "hrtime",
  "uptime",
  "umask",
  "emitWarning",
  "on",
  "addListener",
  "once",
  "off",
  "removeListener",
  "removeAllListeners",
  "emit",
  "listeners",
  "listenerCount",
];

const BUFFER = [
  "Buffer",
  "SlowBuffer",
  "INSPECT_MAX_BYTES",
  "kMaxLength",
  "kStringMaxLength",
  "constants",
  "atob",
  "btoa",
];

export interface NodeModule {
  chunk: NodeModuleChunk;
  /** A property of the chunk's module that is this module (`promises` for "fs/promises"). */
  property?: string;
  exports: readonly string[];
}

/** By specifier without the "node:" prefix. */
export const NODE_MODULES: Readonly<Record<string, NodeModule>> = {
  fs: { chunk: "fs", exports: FS },
  "fs/promises": { chunk: "fs", property: "promises", exports: FS_PROMISES },
  path: { chunk: "path", exports: PATH },
  "path/posix": { chunk: "path", property: "posix", exports: PATH },
  process: { chunk: "process", exports: PROCESS },
  buffer: { chunk: "buffer", exports: BUFFER },
};

/** The module's name without "node:" when a task may import it, else undefined. */
export function nodeModuleName(specifier: string): string | undefined {
  const name = specifier.startsWith("node:") ? specifier.slice(5) : specifier;
  return Object.hasOwn(NODE_MODULES, name) ? name : undefined;
}

/** ES module source that re-exports the guest's implementation of `name` (a NODE_MODULES key). */
export function nodeModuleSource(name: string): string {
  const module = NODE_MODULES[name];
  if (module === undefined) throw new Error(`${JSON.stringify(name)} is not a sandbox module`);
  const access = module.property === undefined ? "" : `.${module.property}`;
  return [
    `const m = globalThis.__capsule.require(${JSON.stringify(module.chunk)})${access};`,
    "export default m;",
    `export const { ${module.exports.join(", ")} } = m;`,
    "",
  ].join("\n");
}
