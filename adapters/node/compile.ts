import { isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type * as esbuild from "esbuild";
import sucrasePackage from "sucrase/package.json" with { type: "json" };
import { readBuiltBundle } from "../../core/compile/built-bundle.ts";
import {
  CODE_SOURCE_NAME,
  checkLanguage,
  compileTaskModule,
} from "../../core/compile/task-module.ts";
import { CompileError } from "../../core/errors.ts";
import { isBuildFailure, sandboxBundleOptions, toCompileError } from "./bundle-options.ts";
import {
  COMPUTED_IMPORT_MESSAGE,
  type ImportScope,
  importRules,
  SANDBOX_MODULE_NAMESPACE,
} from "./import-rules.ts";
import {
  defaultCacheKeyFile,
  forgetCacheKeys,
  loadCacheKey,
  readSigned,
  writeSigned,
} from "./signed-cache.ts";

/** One ESM JavaScript program, ready for the sandbox to evaluate. */
export interface CompiledBundle {
  code: string;
  /** sha256 hex of `code`. */
  hash: string;
  /** Source map (JSON) from `code` back to the task's files, paths relative to cwd. */
  sourceMap: string;
  /** Set when `code` keeps the positions of this one file (paths relative to cwd). */
  sourceName?: string;
  /** True when no compile ran: the bundle came from the memory or disk cache. */
  cached: boolean;
}

export interface CompileOptions {
  /** Where compiled bundles are kept between runs; default `<cwd>/.capsule/cache`. */
  cacheDir?: string;
  /**
   * Absolute path of the guest SDK that `@capsule-run/sdk` and `capsule-portable/sdk` resolve to
   * in a bundle. A self-contained task keeps its import, and the sandbox's built-in SDK answers it.
   */
  sdkEntry: string;
  /** Told once per cache directory when the cache cannot be written; the compile still succeeds. */
  onWarning?: (message: string) => void;
  /**
   * The key file that authenticates disk cache entries; default `~/.capsule/cache-key`, created
   * 0600 on first use. An entry without a valid MAC under this key is ignored and rebuilt.
   */
  cacheKeyFile?: string;
}

export interface CompileStats {
  builds: number;
  memoryHits: number;
  diskHits: number;
}

/** Bump whenever the build options below change, so older cache entries stop matching. */
const CACHE_FORMAT = 5;
const ENTRY_EXTENSIONS = [".ts", ".mts", ".cts", ".js", ".mjs", ".cjs"];
const MEMORY_CACHE_LIMIT = 256;
/**
 * A file changed within this long of being hashed may keep its mtime (coarse or 1-2 s filesystem
 * clocks), so until then its mtime+size is not trusted and its content is hashed again instead.
 */
const RACY_WINDOW_MS = 2000;

const stats: CompileStats = { builds: 0, memoryHits: 0, diskHits: 0 };

/** Bundles a task file and everything it imports (npm packages included) into one ESM program. */
export async function compileFile(
  file: string,
  cwd: string,
  options: CompileOptions,
): Promise<CompiledBundle> {
  const workingDir = path.resolve(cwd);
  const entry = path.resolve(workingDir, file);
  const sdkEntry = path.resolve(options.sdkEntry);
  const built = await builtBundleAt(entry, workingDir);
  if (built !== null) return built;
  // The working directory is part of the key: the bundle's path comments are relative to it.
  const sourceKey = `file\0${workingDir}\0${entry}`;
  const memoryKey = `${sdkEntry}\0${sourceKey}`;
  return (
    lookUpMemory(memoryKey) ??
    once(memoryKey, () => {
      checkEntryFile(entry, workingDir);
      return compileWithCache(
        memoryKey,
        sourceKey,
        options,
        { source: "file", projectRoot: workingDir, sdkEntry, entry },
        { entryPoints: [entry] },
      );
    })
  );
}

/**
 * Bundles task source given as a string. It reaches nothing on disk: it imports the SDK and the
 * sandbox's Node built-ins only (import-rules.ts), as in a page or a Worker.
 */
export async function compileCode(
  code: string,
  language: "ts" | "js",
  cwd: string,
  options: CompileOptions,
): Promise<CompiledBundle> {
  checkLanguage(language);
  const workingDir = path.resolve(cwd);
  const sdkEntry = path.resolve(options.sdkEntry);
  const sourceKey = `code\0${language}\0${workingDir}\0${code}`;
  const memoryKey = `${sdkEntry}\0${sourceKey}`;
  return (
    lookUpMemory(memoryKey) ??
    once(memoryKey, () =>
      compileWithCache(
        memoryKey,
        sourceKey,
        options,
        { source: "code", projectRoot: workingDir, sdkEntry, code },
        {
          stdin: {
            contents: code,
            loader: language,
            resolveDir: workingDir,
            sourcefile: `${CODE_SOURCE_NAME}.${language}`,
          },
        },
      ),
    )
  );
}

/** The largest file read to see whether it is a built bundle (npm packages included). */
const MAX_BUILT_BUNDLE_BYTES = 64 * 1024 * 1024;

/**
 * What `capsule build` wrote (core/compile/built-bundle.ts) runs as it was compiled, with no
 * compile step; null for any other file.
 */
async function builtBundleAt(entry: string, workingDir: string): Promise<CompiledBundle | null> {
  if (![".js", ".mjs"].includes(path.extname(entry).toLowerCase())) return null;
  const stat = statSync(entry, { throwIfNoEntry: false });
  if (stat === undefined || !stat.isFile() || stat.size > MAX_BUILT_BUNDLE_BYTES) return null;
  const shown = path.relative(workingDir, entry) || entry;
  const built = await readBuiltBundle(utf8Text(readFileSync(entry), shown), shown);
  if (built === null) return null;
  return {
    code: built.code,
    hash: createHash("sha256").update(built.code).digest("hex"),
    sourceMap: built.sourceMap ?? "",
    ...(built.sourceMap === undefined && { sourceName: built.source }),
    cached: true,
  };
}

/** Counters since the process started (or the last `clearCompileCache`), for tests and benchmarks. */
export function compileStats(): CompileStats {
  return { ...stats };
}

/** Forgets the in-process cache; the disk cache is left alone. */
export function clearCompileCache(): void {
  memory.clear();
  sdkHashes.clear();
  forgetCacheKeys();
  stats.builds = 0;
  stats.memoryHits = 0;
  stats.diskHits = 0;
}

interface RecordedInput {
  path: string;
  sha256: string;
  size: number;
  mtimeMs: number;
  /** Whether an unchanged mtime+size proves an unchanged file (see RACY_WINDOW_MS). */
  statTrusted: boolean;
}

interface MemoryEntry {
  code: string;
  hash: string;
  sourceMap: string;
  sourceName?: string;
  inputs: RecordedInput[];
}

interface DiskEntry {
  format: typeof CACHE_FORMAT;
  code: string;
  hash: string;
  sourceMap: string;
  sourceName?: string;
  inputs: { path: string; sha256: string }[];
}

const memory = new Map<string, MemoryEntry>();
const inFlight = new Map<string, Promise<CompiledBundle>>();
const sdkHashes = new Map<string, { mtimeMs: number; size: number; sha256: string }>();
const warnedCacheDirs = new Set<string>();

function lookUpMemory(key: string): CompiledBundle | undefined {
  const entry = memory.get(key);
  if (entry === undefined) return undefined;
  if (!entry.inputs.every(isUnchanged)) {
    memory.delete(key);
    return undefined;
  }
  stats.memoryHits++;
  return asCompiled(entry, true);
}

function remember(key: string, entry: MemoryEntry): void {
  memory.delete(key);
  memory.set(key, entry);
  if (memory.size > MEMORY_CACHE_LIMIT) {
    const oldest = memory.keys().next().value;
    if (oldest !== undefined) memory.delete(oldest);
  }
}

/** Concurrent compiles of one source share one build. */
function once(key: string, compile: () => Promise<CompiledBundle>): Promise<CompiledBundle> {
  const pending = inFlight.get(key);
  if (pending) return pending;
  const started = compile().finally(() => inFlight.delete(key));
  inFlight.set(key, started);
  return started;
}

function isUnchanged(input: RecordedInput): boolean {
  const stat = statSync(input.path, { throwIfNoEntry: false });
  if (stat === undefined || !stat.isFile() || stat.size !== input.size) return false;
  if (input.statTrusted && stat.mtimeMs === input.mtimeMs) return true;
  const hashedAt = Date.now();
  const content = readIfPresent(input.path);
  if (content === undefined || sha256(content) !== input.sha256) return false;
  input.mtimeMs = stat.mtimeMs;
  input.statTrusted = stat.mtimeMs < hashedAt - RACY_WINDOW_MS;
  return true;
}

async function compileWithCache(
  memoryKey: string,
  sourceKey: string,
  options: CompileOptions,
  scope: ImportScope,
  source: Pick<esbuild.BuildOptions, "entryPoints" | "stdin">,
): Promise<CompiledBundle> {
  const { sdkEntry, projectRoot: workingDir } = scope;
  const cacheDir = path.resolve(workingDir, options.cacheDir ?? path.join(".capsule", "cache"));
  const diskKey = sha256(
    [CACHE_FORMAT, esbuildVersion(), sucraseVersion(), sdkEntry, hashSdk(sdkEntry), sourceKey].join(
      "\0",
    ),
  );
  const cacheFile = path.join(cacheDir, `${diskKey}.json`);

  const cacheKey = loadCacheKey(options.cacheKeyFile ?? defaultCacheKeyFile(), (message) =>
    warnOnce(cacheDir, message, options.onWarning),
  );
  const fromDisk = cacheKey && readDiskEntry(cacheFile, diskKey, cacheKey);
  if (fromDisk) {
    stats.diskHits++;
    remember(memoryKey, fromDisk);
    return asCompiled(fromDisk, true);
  }

  // Sub-millisecond, since a file saved just before the build often shares its millisecond.
  const startedAt = performance.timeOrigin + performance.now();
  stats.builds++;
  const result = await bundle(source, scope);
  const inputs = recordInputs(result.metafile, workingDir, startedAt);
  const code = result.outputFiles.find((f) => f.path.endsWith(".js"))?.text ?? "";
  const entry = (await asTaskModule(result.metafile, source, sdkEntry, workingDir)) ?? {
    code,
    hash: sha256(code),
    sourceMap: result.outputFiles.find((f) => f.path.endsWith(".map"))?.text ?? "",
  };
  if (inputs) {
    remember(memoryKey, { ...entry, inputs });
    const diskEntry: DiskEntry = {
      format: CACHE_FORMAT,
      ...entry,
      inputs: inputs.map(({ path, sha256 }) => ({ path, sha256 })),
    };
    if (cacheKey)
      writeDiskEntry(cacheDir, cacheFile, diskKey, cacheKey, diskEntry, options.onWarning);
  }
  return asCompiled(entry, false);
}

function asCompiled(entry: Omit<MemoryEntry, "inputs">, cached: boolean): CompiledBundle {
  const { code, hash, sourceMap, sourceName } = entry;
  return { code, hash, sourceMap, ...(sourceName === undefined ? {} : { sourceName }), cached };
}

/**
 * A task file that imports nothing but the SDK and the sandbox's Node built-ins runs as the
 * ES module every host makes of it (core/compile/task-module.ts), not as esbuild's bundle: the
 * same source then gives the same program, and the same fuel, on Node, in a page and in a Worker.
 * Returns undefined for a task that imports other files or packages; only Node can bundle those.
 */
async function asTaskModule(
  metafile: esbuild.Metafile,
  source: Pick<esbuild.BuildOptions, "entryPoints" | "stdin">,
  sdkEntry: string,
  workingDir: string,
): Promise<Omit<MemoryEntry, "inputs"> | undefined> {
  const entryFile = source.stdin ? undefined : ((source.entryPoints as string[])[0] as string);
  const entryName =
    entryFile === undefined
      ? `${CODE_SOURCE_NAME}.${source.stdin?.loader === "ts" ? "ts" : "js"}`
      : path.relative(workingDir, entryFile).split(path.sep).join("/");
  const sdkName = path.relative(workingDir, sdkEntry).split(path.sep).join("/");
  // CommonJS needs esbuild's wrapper; the sandbox's loader speaks ES modules only.
  if (metafile.inputs[entryName]?.format === "cjs" || /\.c[jt]s$/i.test(entryName))
    return undefined;
  const selfContained = Object.keys(metafile.inputs).every(
    (name) =>
      name === entryName || name === sdkName || name.startsWith(`${SANDBOX_MODULE_NAMESPACE}:`),
  );
  if (!selfContained) return undefined;
  const text =
    entryFile === undefined
      ? (source.stdin?.contents as string)
      : readIfPresent(entryFile)?.toString("utf8");
  if (text === undefined) return undefined;
  const language = /\.[mc]?ts$/i.test(entryName) ? "ts" : "js";
  const { sourceMap = "", ...compiled } = await compileTaskModule(text, language, {
    sourceName: entryName,
    loadSucrase: () => import("sucrase"),
  });
  return { ...compiled, sourceMap };
}

let cachedEsbuildVersion: string | undefined;

/** Part of every cache key; read from the package so a cache hit does not load esbuild. */
function esbuildVersion(): string {
  cachedEsbuildVersion ??= (
    createRequire(import.meta.url)("esbuild/package.json") as { version: string }
  ).version;
  return cachedEsbuildVersion;
}

/** Sucrase is bundled into dist/, so its version is too (an install has no sucrase package). */
function sucraseVersion(): string {
  return sucrasePackage.version;
}

/**
 * esbuild names a missing SDK export by the SDK's path on this machine ("../../x/sdk/index.ts");
 * the task imported "@capsule-run/sdk", so the message names that and what it exports.
 */
async function nameSdkImports(
  messages: esbuild.Message[],
  scope: ImportScope,
): Promise<esbuild.Message[]> {
  const missing = /^No matching export in "([^"]+)" for import "([^"]+)"$/;
  const fromSdk = (message: esbuild.Message) => {
    const match = missing.exec(message.text);
    return match?.[1] !== undefined && path.resolve(scope.projectRoot, match[1]) === scope.sdkEntry
      ? match[2]
      : undefined;
  };
  if (!messages.some((message) => fromSdk(message) !== undefined)) return messages;
  const { build } = await import("esbuild");
  const listed = await build({
    entryPoints: [scope.sdkEntry],
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "neutral",
    logLevel: "silent",
  });
  const exported = Object.values(listed.metafile.outputs)
    .flatMap((output) => output.exports)
    .sort()
    .join(", ");
  return messages.map((message) => {
    const name = fromSdk(message);
    return name === undefined
      ? message
      : {
          ...message,
          text: `"${name}" is not exported by "@capsule-run/sdk"; it exports ${exported}`,
        };
  });
}

async function bundle(
  source: Pick<esbuild.BuildOptions, "entryPoints" | "stdin">,
  scope: ImportScope,
) {
  const rules = importRules(scope);
  let result: Awaited<ReturnType<typeof esbuild.build<ReturnType<typeof sandboxBundleOptions>>>>;
  try {
    // Loaded on first compile only: a cache hit (the common case) never pays for loading it.
    const { build } = await import("esbuild");
    result = await build({
      ...sandboxBundleOptions({
        absWorkingDir: scope.projectRoot,
        outfile: path.join(scope.projectRoot, "task.js"),
      }),
      ...source,
      plugins: [rules.plugin],
    });
  } catch (error) {
    if (!isBuildFailure(error)) throw error;
    // One message, whatever the searched directories held (import-rules.ts).
    if (rules.usedComputedImport({ errors: error.errors })) {
      throw new CompileError(COMPUTED_IMPORT_MESSAGE);
    }
    throw toCompileError(await nameSdkImports(error.errors, scope));
  }
  if (rules.usedComputedImport(result)) throw new CompileError(COMPUTED_IMPORT_MESSAGE);
  return result;
}

function checkEntryFile(entry: string, workingDir: string): void {
  const shown = path.relative(workingDir, entry) || entry;
  const stat = statSync(entry, { throwIfNoEntry: false });
  if (stat === undefined) throw new CompileError(`${shown}: file not found`);
  const accepted = ENTRY_EXTENSIONS.join(", ");
  if (stat.isDirectory()) {
    throw new CompileError(`${shown}: is a directory; pass a task file ending in ${accepted}`);
  }
  const extension = path.extname(entry);
  if (!ENTRY_EXTENSIONS.includes(extension.toLowerCase())) {
    const what = extension === "" ? "a file without an extension" : `"${extension}" files`;
    throw new CompileError(`${shown}: ${what} cannot be run; a task file ends in ${accepted}`);
  }
  // esbuild would read a stray byte inside a string as U+FFFD and run the task with it.
  utf8Text(readFileSync(entry), shown);
}

/** The file's text; a byte that is not UTF-8 is a compile_error naming where it is. */
function utf8Text(bytes: Buffer, shown: string): string {
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    const line = bytes.subarray(0, at).filter((byte) => byte === 0x0a).length + 1;
    throw new CompileError(
      `${shown}:${line}: byte 0x${(bytes[at] ?? 0).toString(16)} at offset ${at} is not UTF-8; save the task file as UTF-8`,
    );
  }
  return bytes.toString("utf8");
}

/** A Python task file's text, with the same checks as a TypeScript entry's. */
export function readPythonFile(file: string, cwd: string): string {
  const workingDir = path.resolve(cwd);
  const entry = path.resolve(workingDir, file);
  const shown = path.relative(workingDir, entry) || entry;
  const stat = statSync(entry, { throwIfNoEntry: false });
  if (stat === undefined) throw new CompileError(`${shown}: file not found`);
  if (stat.isDirectory()) throw new CompileError(`${shown}: is a directory; pass a .py task file`);
  return utf8Text(readFileSync(entry), shown);
}

/** Offset where the first malformed UTF-8 sequence starts. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  const inRange = (at: number, low: number, high: number) =>
    at < bytes.length && (bytes[at] as number) >= low && (bytes[at] as number) <= high;
  let at = 0;
  while (at < bytes.length) {
    const lead = bytes[at] as number;
    // The second byte's range depends on the lead: no overlongs, surrogates, or past U+10FFFF.
    const [length, low, high] =
      lead < 0x80
        ? [1, 0, 0]
        : lead >= 0xc2 && lead <= 0xdf
          ? [2, 0x80, 0xbf]
          : lead === 0xe0
            ? [3, 0xa0, 0xbf]
            : lead === 0xed
              ? [3, 0x80, 0x9f]
              : lead >= 0xe1 && lead <= 0xef
                ? [3, 0x80, 0xbf]
                : lead === 0xf0
                  ? [4, 0x90, 0xbf]
                  : lead >= 0xf1 && lead <= 0xf3
                    ? [4, 0x80, 0xbf]
                    : lead === 0xf4
                      ? [4, 0x80, 0x8f]
                      : [0, 0, 0];
    if (length === 0) return at;
    if (length > 1 && !inRange(at + 1, low, high)) return at;
    for (let next = at + 2; next < at + length; next++) {
      if (!inRange(next, 0x80, 0xbf)) return at;
    }
    at += length;
  }
  return at;
}

/**
 * Hashes every file the bundle was built from. Returns undefined (do not cache) when one changed
 * while esbuild was reading it, since the recorded hash might then not match what was bundled.
 */
function recordInputs(
  metafile: esbuild.Metafile,
  workingDir: string,
  startedAt: number,
): RecordedInput[] | undefined {
  const codeSources = new Set([
    path.join(workingDir, `${CODE_SOURCE_NAME}.ts`),
    path.join(workingDir, `${CODE_SOURCE_NAME}.js`),
  ]);
  const inputs: RecordedInput[] = [];
  for (const [name, { bytes }] of Object.entries(metafile.inputs)) {
    if (name.startsWith(`${SANDBOX_MODULE_NAMESPACE}:`)) continue;
    const file = path.resolve(workingDir, name);
    if (codeSources.has(file)) continue;
    const stat = statSync(file, { throwIfNoEntry: false });
    const content = readIfPresent(file);
    const changedSinceRead =
      stat === undefined ||
      content === undefined ||
      content.length !== bytes ||
      stat.mtimeMs >= startedAt;
    if (changedSinceRead) return undefined;
    inputs.push({
      path: file,
      sha256: sha256(content),
      size: stat.size,
      mtimeMs: stat.mtimeMs,
      statTrusted: stat.mtimeMs < startedAt - RACY_WINDOW_MS,
    });
  }
  return inputs;
}

/** A bundle entry larger than this is not read (its code, source map and inputs as JSON). */
const MAX_ENTRY_BYTES = 256 * 1024 * 1024;

function readDiskEntry(cacheFile: string, diskKey: string, key: Buffer): MemoryEntry | undefined {
  const entry = readSigned(cacheFile, diskKey, key, MAX_ENTRY_BYTES) as DiskEntry | undefined;
  if (
    entry?.format !== CACHE_FORMAT ||
    typeof entry.code !== "string" ||
    !Array.isArray(entry.inputs)
  ) {
    return undefined;
  }
  const hashedAt = Date.now();
  const inputs: RecordedInput[] = [];
  for (const recorded of entry.inputs) {
    const stat = statSync(recorded.path, { throwIfNoEntry: false });
    const content = readIfPresent(recorded.path);
    if (stat === undefined || content === undefined || sha256(content) !== recorded.sha256) {
      return undefined;
    }
    inputs.push({
      path: recorded.path,
      sha256: recorded.sha256,
      size: stat.size,
      mtimeMs: stat.mtimeMs,
      statTrusted: stat.mtimeMs < hashedAt - RACY_WINDOW_MS,
    });
  }
  return {
    code: entry.code,
    hash: entry.hash,
    sourceMap: entry.sourceMap ?? "",
    ...(typeof entry.sourceName === "string" ? { sourceName: entry.sourceName } : {}),
    inputs,
  };
}

/** Temp file + rename, so a concurrent reader sees the old entry or the new one, never half of one. */
function writeDiskEntry(
  cacheDir: string,
  cacheFile: string,
  diskKey: string,
  key: Buffer,
  entry: DiskEntry,
  onWarning: ((message: string) => void) | undefined,
): void {
  try {
    writeSigned(cacheDir, cacheFile, diskKey, key, entry);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    warnOnce(
      cacheDir,
      `compile cache at ${cacheDir} cannot be written (${reason}); compiling without it`,
      onWarning,
    );
  }
}

function warnOnce(
  cacheDir: string,
  message: string,
  onWarning: ((message: string) => void) | undefined,
): void {
  if (warnedCacheDirs.has(cacheDir)) return;
  warnedCacheDirs.add(cacheDir);
  onWarning?.(message);
}

/** The SDK's content is part of every disk cache key; hashed once per change, not per compile. */
function hashSdk(sdkEntry: string): string {
  const stat = statSync(sdkEntry, { throwIfNoEntry: false });
  if (stat === undefined) return "missing";
  const known = sdkHashes.get(sdkEntry);
  if (known && known.mtimeMs === stat.mtimeMs && known.size === stat.size) return known.sha256;
  const content = readIfPresent(sdkEntry);
  if (content === undefined) return "missing";
  const hash = sha256(content);
  sdkHashes.set(sdkEntry, { mtimeMs: stat.mtimeMs, size: stat.size, sha256: hash });
  return hash;
}

function readIfPresent(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}
