/**
 * What the compile step may read on a task's behalf. esbuild runs on the host with the host's
 * file access, and a task's imports choose what it reads, so every import passes these rules
 * before esbuild's resolver or loader touches the disk:
 *
 * - A task file imports the project's own source modules (SOURCE_EXTENSIONS), outside dot-files
 *   and dot-folders, and installed packages (their source files and their own .json files).
 * - A task given as code (`run({ code })`) reaches nothing on disk: the SDK and the sandbox's Node
 *   built-ins only, as in a page or a Worker.
 * - Nothing else: no absolute paths, no URLs (`file:`, `data:`), no import attributes (they load
 *   files as text or bytes), no data files, nothing outside the project after symlinks.
 *
 * A refusal is a compile_error that names the import and the rule. Refusals that need the disk
 * (where a path really leads) share one message with "no such module", so a task cannot learn
 * from the error whether a file it may not read exists. Imports written inside an installed
 * package are the caller's code, not the task's: they resolve as usual, and every file any
 * import reaches is checked again, where it really is, when it is loaded.
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  readlinkSync,
  realpathSync,
} from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import type * as esbuild from "esbuild";
import { NODE_MODULES, nodeModuleName, nodeModuleSource } from "../../core/guest/node-modules.ts";

/** The files a task may import from its project, each with the only loader it gets. */
const SOURCE_LOADERS: Record<string, esbuild.Loader> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
};
/** A package may also read its own .json files (data it ships, `require("./package.json")`). */
const PACKAGE_LOADERS: Record<string, esbuild.Loader> = { ...SOURCE_LOADERS, ".json": "json" };

export const SOURCE_EXTENSIONS = Object.keys(SOURCE_LOADERS);
const SDK_NAMES = new Set(["@capsule-run/sdk", "capsule-portable/sdk"]);
const NODE_MODULES_DIR = "node_modules";

const SANDBOX_MODULES = Object.keys(NODE_MODULES).join(", ");
const FILE_RULE = `a task file imports only the project's own source modules (${SOURCE_EXTENSIONS.join(", ")}) outside dot-files and dot-folders, installed packages, "@capsule-run/sdk" and the sandbox's Node built-ins`;
const CODE_RULE = `a task given as code reaches nothing on disk: it imports only "@capsule-run/sdk" and the sandbox's Node built-ins (${SANDBOX_MODULES}, also as "node:..."); to import the project's modules or packages, save the task as a file in the project and run that file`;

const unavailable = (specifier: string) =>
  `"${specifier}" is not available inside the sandbox (the Node built-in modules a task can import: ${SANDBOX_MODULES}, also as "node:...")`;

/** The one message for an import that does not resolve or resolves somewhere refused. */
const notInReach = (specifier: string) =>
  `"${specifier}" cannot be imported: no source module or installed package of that name is in the task's reach; ${FILE_RULE}`;

const refused = (specifier: string, why: string, rule = FILE_RULE) =>
  `"${specifier}" cannot be imported: ${why}; ${rule}`;

/** Bundle inputs in this namespace are generated text, not files: nothing to hash. */
export const SANDBOX_MODULE_NAMESPACE = "capsule-node";
const builtinNames = builtinModules.filter((name) => !name.startsWith("_") && !name.includes("/"));
const builtinFilter = new RegExp(`^(?:${builtinNames.join("|")})(?:/|$)`);
const DEFAULT_RESOLUTION = Symbol("default resolution");

interface LoadData {
  specifier: string;
}

export interface ImportScope {
  /** "file": a task file in the project; "code": a task given as a string. */
  source: "file" | "code";
  /** The project root (the run's cwd). */
  projectRoot: string;
  /** The guest SDK, which `@capsule-run/sdk` resolves to. */
  sdkEntry: string;
  /** The task file, chosen by the caller: read wherever it is. */
  entry?: string;
  /** The source of a task given as code. */
  code?: string;
}

/**
 * The esbuild plugin that enforces the rules. It answers every import itself (the default
 * resolver runs only when it asks), and every load, so that only JavaScript and TypeScript loaders
 * ever run on what a task names.
 */
/**
 * The rules as an esbuild plugin, and what the build needs to check afterwards: whether a task's
 * module used an import by a computed path (COMPUTED_IMPORT_MESSAGE says why that matters).
 */
export function importRules(scope: ImportScope): {
  plugin: esbuild.Plugin;
  usedComputedImport: (outcome: BuildOutcome) => boolean;
} {
  const taskSources: string[] = [];
  let computedMatchLoaded = false;
  const plugin = importRulesPlugin(scope, {
    onTaskSource: (text) => taskSources.push(text),
    onComputedMatch: () => {
      computedMatchLoaded = true;
    },
  });
  if (scope.code !== undefined) taskSources.push(scope.code);
  return {
    plugin,
    usedComputedImport: (outcome) =>
      computedMatchLoaded ||
      ("errors" in outcome
        ? outcome.errors.some((error) => GLOB_FAILURE.test(error.text)) ||
          taskSources.some((text) => COMPUTED_IMPORT.test(text))
        : Object.entries(outcome.metafile.inputs).some(
            ([name, input]) =>
              !name.split("/").includes(NODE_MODULES_DIR) &&
              input.imports.some((imported) => imported.path.includes("*")),
          )),
  };
}

/** How a build ended: its metafile, or its errors. */
export type BuildOutcome = { metafile: esbuild.Metafile } | { errors: readonly esbuild.Message[] };

/**
 * esbuild turns `import(`./dir/${name}`)` and `require("./dir/" + name)` into a glob and lists
 * directories (inside the project or out of it) to bundle every match. Whatever it found would
 * show in the bundle or the errors, so a task module that does this gets one fixed message,
 * whatever the directories hold. A failed build has no metafile: its task sources are searched
 * for the pattern instead (comments and parentheses allowed between the call and its argument).
 */
export const COMPUTED_IMPORT_MESSAGE = `a task cannot import by a computed path (like import(\`./dir/\${name}.ts\`) or require("./dir/" + name)): the bundler would search directories for it; import each module by its literal name, or load data through allowedFiles`;
const GLOB_FAILURE = /^Could not resolve (?:import|require)\(".*\*/;
/** Whitespace and comments, each matched one way only (no nested ambiguity to backtrack on). */
const GAP = String.raw`(?:\s|/\*(?:[^*]|\*(?!/))*\*/|//[^\n]*\n)*`;
const BACKTICK = "`";
const COMPUTED_IMPORT = new RegExp(
  [
    String.raw`\b(?:import|require)${GAP}\((?:${GAP}\()*${GAP}`,
    // A template literal starting "./" or "../" with a substitution, or such a string plus more.
    String.raw`(?:${BACKTICK}\.{1,2}/[^${BACKTICK}]*\$\{|(["'${BACKTICK}])\.{1,2}/[^"'${BACKTICK}\n]*\1${GAP}\+)`,
  ].join(""),
);

function importRulesPlugin(
  scope: ImportScope,
  report: { onTaskSource: (text: string) => void; onComputedMatch: () => void },
): esbuild.Plugin {
  const projectRoot = realpathSync(scope.projectRoot);
  const sdkEntry = realOrSelf(scope.sdkEntry);
  const entry = scope.entry === undefined ? undefined : realOrSelf(scope.entry);
  const isCode = scope.source === "code";

  /** The loader for a real path the rules allow, or undefined. */
  const loaderFor = (real: string): esbuild.Loader | undefined => {
    if (real === sdkEntry || real === entry) return SOURCE_LOADERS[extensionOf(real)];
    if (isCode) return undefined;
    const segments = real.split(path.sep);
    const packageAt = segments.lastIndexOf(NODE_MODULES_DIR);
    if (packageAt !== -1) {
      // A package's own files; pnpm's node_modules/.pnpm/... sits before the last node_modules.
      if (segments.slice(packageAt + 1).some(isDotName)) return undefined;
      return PACKAGE_LOADERS[extensionOf(real)];
    }
    const relative = path.relative(projectRoot, real);
    if (relative === "" || relative.startsWith("..") || path.isAbsolute(relative)) return undefined;
    if (relative.split(path.sep).some(isDotName)) return undefined;
    return SOURCE_LOADERS[extensionOf(real)];
  };

  return {
    name: "capsule-import-rules",
    setup(build) {
      const sandboxModule = (specifier: string) => {
        const name = nodeModuleName(specifier);
        return name === undefined ? undefined : { path: name, namespace: SANDBOX_MODULE_NAMESPACE };
      };
      const fail = (text: string): esbuild.OnResolveResult => ({ errors: [{ text }] });

      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === DEFAULT_RESOLUTION) return undefined;
        // The entry is the caller's choice; it is checked again when loaded.
        if (args.kind === "entry-point") return undefined;
        const specifier = args.path;
        if (SDK_NAMES.has(specifier)) {
          return { path: scope.sdkEntry, pluginData: { specifier } satisfies LoadData };
        }
        if (Object.keys(args.with ?? {}).length > 0) {
          return fail(
            refused(
              specifier,
              `import attributes (with { type: ... }) load a file as data, which the compile step does not do for a task`,
              isCode ? CODE_RULE : FILE_RULE,
            ),
          );
        }
        if (specifier.startsWith("node:")) {
          return sandboxModule(specifier) ?? fail(unavailable(specifier));
        }
        const builtin = builtinFilter.test(specifier);
        if (builtin) {
          const provided = sandboxModule(specifier);
          if (provided) return provided;
          if (isCode) return fail(unavailable(specifier));
        } else if (isCode) {
          return fail(refused(specifier, "it is not the SDK or a Node built-in", CODE_RULE));
        }
        // A package's own imports (the caller installed it, the task did not write it) resolve
        // as usual, one round trip fewer each; where they lead is checked when loaded.
        const fromPackage = args.resolveDir.split(path.sep).includes(NODE_MODULES_DIR);
        if (fromPackage && !builtin) {
          const refusal = packageRefusal(specifier);
          return refusal === undefined ? undefined : fail(refused(specifier, refusal));
        }
        const lexical = lexicalRefusal(specifier, args.resolveDir, projectRoot);
        if (lexical !== undefined) return fail(refused(specifier, lexical));
        const resolved = await build.resolve(specifier, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: DEFAULT_RESOLUTION,
        });
        const allowed =
          resolved.errors.length === 0 &&
          !resolved.external &&
          resolved.namespace === "file" &&
          loaderFor(realOrSelf(resolved.path)) !== undefined;
        if (!allowed) return fail(builtin ? unavailable(specifier) : notInReach(specifier));
        return {
          path: resolved.path,
          namespace: resolved.namespace,
          sideEffects: resolved.sideEffects,
          suffix: resolved.suffix,
          // A refusal at load time names the import as written, in the words used above.
          pluginData: { specifier } satisfies LoadData,
        };
      });

      build.onLoad({ filter: /.*/, namespace: SANDBOX_MODULE_NAMESPACE }, (args) => ({
        contents: nodeModuleSource(args.path),
        loader: "js",
      }));

      // Every file esbuild reads passes here: the path is checked again where it really is once
      // opened (a symlink swapped in after resolution is seen), and gets a source loader only.
      build.onLoad({ filter: /.*/ }, (args) => {
        const data = args.pluginData as LoadData | undefined;
        const shown = data?.specifier ?? (path.relative(projectRoot, args.path) || args.path);
        const isEntry = args.path === entry || realOrSelf(args.path) === entry;
        const inPackage = args.path.split(path.sep).includes(NODE_MODULES_DIR);
        if (data === undefined && !isEntry && !inPackage) {
          // Reached without passing onResolve: a match of a glob esbuild made of a computed
          // import. Never opened; the build is refused as a whole (usedComputedImport).
          report.onComputedMatch();
          return { contents: "", loader: "js" };
        }
        if (Object.keys(args.with ?? {}).length > 0) {
          return { errors: [{ text: notInReach(shown) }] };
        }
        let fd: number;
        try {
          // Non-blocking: a FIFO named like a module must not hang the compile.
          fd = openSync(args.path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
        } catch {
          return { errors: [{ text: notInReach(shown) }] };
        }
        try {
          const real = openedPath(fd, args.path);
          const loader = loaderFor(real);
          if (loader === undefined || !fstatSync(fd).isFile()) {
            return { errors: [{ text: notInReach(shown) }] };
          }
          // A second name for a file elsewhere (a hard link) is not the project's own module.
          // Packages are exempt: pnpm links them from its store.
          const projectFile =
            real !== sdkEntry && real !== entry && !real.split(path.sep).includes(NODE_MODULES_DIR);
          if (projectFile && fstatSync(fd).nlink > 1) {
            return { errors: [{ text: notInReach(shown) }] };
          }
          const contents = withoutLinkedSourceMaps(readFileSync(fd));
          if (!real.split(path.sep).includes(NODE_MODULES_DIR)) {
            report.onTaskSource(contents.toString("utf8"));
          }
          return { contents, loader };
        } finally {
          closeSync(fd);
        }
      });
    },
  };
}

/** `//# sourceMappingURL=` (or `/*@ ...`) naming a file rather than carrying the map inline. */
const LINKED_SOURCE_MAP = /([#@]\s*sourceMappingURL)=(?!data:)/g;

/**
 * A module's comment naming its source map is a read esbuild would make on the task's behalf,
 * outside these rules (any path, and the map's `sources` reach the envelope's stack traces):
 * the comment is broken so the map is never read. Inline (`data:`) maps stay.
 */
function withoutLinkedSourceMaps(contents: Buffer): Buffer | string {
  const text = contents.toString("utf8");
  LINKED_SOURCE_MAP.lastIndex = 0;
  if (!LINKED_SOURCE_MAP.test(text)) return contents;
  return text.replace(LINKED_SOURCE_MAP, "$1 (not read)=");
}

/** What no import may be, wherever it is written. */
function packageRefusal(specifier: string): string | undefined {
  if (specifier.includes("\0")) return "a module name holds no NUL";
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier) && !specifier.startsWith("node:")) {
    return "a URL (file:, data:, http:...) is not a module of the project";
  }
  if (path.isAbsolute(specifier))
    return "an absolute path names a file outside the project's modules";
  return undefined;
}

/**
 * Why an import is refused from its text alone, before anything is read: the reason then cannot
 * depend on what exists on disk.
 */
function lexicalRefusal(
  specifier: string,
  resolveDir: string,
  projectRoot: string,
): string | undefined {
  if (specifier.includes("\0") || specifier.includes("\\")) {
    return 'a module name holds no NUL or "\\"';
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) {
    return "a URL (file:, data:, http:...) is not a module of the project";
  }
  if (path.isAbsolute(specifier) || /^[a-z]:/i.test(specifier) || specifier.startsWith("~")) {
    return "an absolute path names a file outside the project's modules";
  }
  const relative = specifier === "." || specifier === ".." || /^\.\.?\//.test(specifier);
  if (relative) {
    const target = path.resolve(resolveDir, specifier);
    const below = path.relative(projectRoot, target);
    if (below === "") return "it names the project directory itself";
    if (below.startsWith("..") || path.isAbsolute(below)) {
      return "it leads outside the project directory";
    }
    const dotted = below.split(path.sep).find(isDotName);
    if (dotted !== undefined) return `"${dotted}" is a dot-file or dot-folder`;
    const extension = extensionOf(target);
    if (extension !== "" && !(extension in SOURCE_LOADERS)) {
      return `"${extension}" files are not source modules`;
    }
    return undefined;
  }
  // A package name and a path inside the package: no way back out, no hidden files.
  const segments = specifier.split("/");
  if (segments.some((segment) => segment === "..")) return 'a package path holds no ".."';
  const dotted = segments.find((segment) => isDotName(segment) && segment !== ".");
  if (dotted !== undefined) return `"${dotted}" is a dot-file or dot-folder`;
  return undefined;
}

function isDotName(name: string): boolean {
  return name.startsWith(".");
}

function extensionOf(file: string): string {
  return path.extname(file).toLowerCase();
}

function realOrSelf(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/** Where an open file really is: the kernel's answer on Linux, the real path elsewhere. */
function openedPath(fd: number, file: string): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return realOrSelf(file);
  }
}
