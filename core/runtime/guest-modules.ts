/**
 * What `import` can reach inside a sandbox: the SDK and the Node built-ins the guest implements.
 * QuickJS's own module loader resolves them, so a self-contained task file runs as written on every
 * host, with no bundler. Anything else is refused with a message that says what is importable.
 */
import { NODE_MODULES, nodeModuleName, nodeModuleSource } from "../guest/node-modules.ts";
import { SDK_MODULE_SOURCE } from "../guest/sources.generated.ts";

/** The SDK's one module name; `capsule-portable/sdk` is the same module. */
export const SDK_MODULE = "@capsule-run/sdk";
const SDK_ALIASES = new Set([SDK_MODULE, "capsule-portable/sdk"]);
const NODE_PREFIX = "node:";

/** The canonical module name for an import specifier, or undefined when it cannot be imported. */
export function guestModuleName(specifier: string): string | undefined {
  if (SDK_ALIASES.has(specifier)) return SDK_MODULE;
  const name = nodeModuleName(specifier);
  return name === undefined ? undefined : `${NODE_PREFIX}${name}`;
}

/** Source of a module named by guestModuleName. */
export function guestModuleSource(name: string): string | undefined {
  if (name === SDK_MODULE) return SDK_MODULE_SOURCE;
  if (!name.startsWith(NODE_PREFIX)) return undefined;
  const nodeName = nodeModuleName(name);
  return nodeName === undefined ? undefined : nodeModuleSource(nodeName);
}

const IMPORTABLE = `"${SDK_MODULE}" and the Node built-ins ${Object.keys(NODE_MODULES).join(", ")} (also as "node:...")`;

export function unresolvableImport(specifier: string): string {
  const what = specifier.startsWith(NODE_PREFIX)
    ? "is not available inside the sandbox"
    : specifier.startsWith(".") || specifier.startsWith("/")
      ? "cannot be imported: a task given as one file cannot import other files"
      : "cannot be imported inside the sandbox";
  return `"${specifier}" ${what}; a task file can import ${IMPORTABLE}`;
}
