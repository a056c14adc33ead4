/**
 * The artifact `capsule build FILE` writes: the program a sandbox runs for FILE (the task and the
 * npm packages it imports, bundled; `@capsule-run/sdk` and the sandbox's built-ins left for the
 * sandbox to answer), so that running it needs no compile step on any host. It is plain
 * JavaScript, readable and runnable as `code` anywhere:
 *
 *   <the program>
 *   //# sourceMappingURL=data:application/json;base64,<map back to the task's files>
 *   //# capsule-bundle {"format":1,"sha256":"<hex of everything above>","source":"main.ts",...}
 *
 * The last line marks it and guards it: a bundle edited after the build is refused with a
 * clear error instead of running something nobody built. The mark is not a signature: the
 * sandbox is the boundary, and a bundle runs with no more authority than any task file.
 */

import { fromBase64, toBase64 } from "../encoding/base64.ts";
import { CompileError } from "../errors.ts";
import { sha256Hex } from "./hash.ts";

const MARK = "//# capsule-bundle ";
const MAP_PREFIX = "//# sourceMappingURL=data:application/json;base64,";
export const BUNDLE_FORMAT = 1;

export interface BuiltBundle {
  /** The program, as the compile step made it (fuel is the same as running the task file). */
  code: string;
  /** Its source map (JSON), when the build kept one. */
  sourceMap?: string;
  /** The task file it was built from, relative to the project root at build time. */
  source: string;
}

/** The artifact's text for a compiled program. */
export async function writeBuiltBundle(bundle: BuiltBundle, builtBy: string): Promise<string> {
  const body =
    bundle.sourceMap === undefined
      ? `${bundle.code}\n`
      : `${bundle.code}\n${MAP_PREFIX}${toBase64(new TextEncoder().encode(bundle.sourceMap))}\n`;
  const mark = {
    format: BUNDLE_FORMAT,
    sha256: await sha256Hex(body),
    source: bundle.source,
    builtBy,
  };
  return `${body}${MARK}${JSON.stringify(mark)}\n`;
}

/**
 * The program in a built bundle, or null when `text` is not one (no mark on its last line).
 * Throws a CompileError naming `name` when it is marked but was changed after the build, or its
 * format is not this version's.
 */
export async function readBuiltBundle(text: string, name: string): Promise<BuiltBundle | null> {
  const trimmed = text.endsWith("\n") ? text.slice(0, -1) : text;
  const markAt = trimmed.lastIndexOf("\n") + 1;
  if (!trimmed.startsWith(MARK, markAt)) return null;
  let mark: { format?: unknown; sha256?: unknown; source?: unknown };
  try {
    mark = JSON.parse(trimmed.slice(markAt + MARK.length));
  } catch {
    throw new CompileError(`${name}: its capsule-bundle line is not valid JSON; build it again`);
  }
  if (mark.format !== BUNDLE_FORMAT) {
    throw new CompileError(
      `${name}: a bundle of format ${JSON.stringify(mark.format)}, this runtime reads format ${BUNDLE_FORMAT}; build it again with capsule build`,
    );
  }
  const body = text.slice(0, markAt);
  if (typeof mark.sha256 !== "string" || mark.sha256 !== (await sha256Hex(body))) {
    throw new CompileError(
      `${name} was changed after capsule build (its content no longer matches its capsule-bundle line); build it again`,
    );
  }
  const lines = body.slice(0, -1);
  const mapAt = lines.lastIndexOf("\n") + 1;
  const source = typeof mark.source === "string" ? mark.source : name;
  if (!lines.startsWith(MAP_PREFIX, mapAt)) return { code: lines, source };
  return {
    code: lines.slice(0, Math.max(0, mapAt - 1)),
    sourceMap: new TextDecoder().decode(fromBase64(lines.slice(mapAt + MAP_PREFIX.length))),
    source,
  };
}
