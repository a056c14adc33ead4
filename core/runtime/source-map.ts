import { originalPositionFor, TraceMap } from "@jridgewell/trace-mapping";
import type { Bundle } from "./run-task.ts";

const maps = new Map<string, TraceMap | null>();
const MAP_CACHE_SIZE = 32;

/** `task.js:LINE:COLUMN` as QuickJS prints it in stack traces (1-based line and column). */
const BUNDLE_POSITION = /\btask\.js:(\d+):(\d+)/g;

/**
 * Rewrites positions in the bundled program (`task.js:38:18`) to the task's own files
 * (`examples/job.ts:3:11`), so an error points at the code its author wrote.
 */
export function mapBundlePositions(
  text: string,
  bundle: Pick<Bundle, "hash" | "sourceMap" | "sourceName">,
): string {
  if (!text.includes("task.js:")) return text;
  if (bundle.sourceName !== undefined) {
    const name = bundle.sourceName;
    return text.replace(
      BUNDLE_POSITION,
      (_whole, line: string, column: string) => `${name}:${line}:${column}`,
    );
  }
  if (!bundle.sourceMap) return text;
  const map = traceMapFor(bundle.hash, bundle.sourceMap);
  if (map === null) return text;
  return text.replace(BUNDLE_POSITION, (whole, line: string, column: string) => {
    const original = originalPositionFor(map, {
      line: Number(line),
      column: Math.max(0, Number(column) - 1),
    });
    if (original.source === null || original.line === null) return whole;
    return `${original.source}:${original.line}:${(original.column ?? 0) + 1}`;
  });
}

function traceMapFor(hash: string, sourceMap: string): TraceMap | null {
  let map = maps.get(hash);
  if (map === undefined) {
    try {
      map = new TraceMap(sourceMap);
    } catch {
      map = null;
    }
    if (maps.size >= MAP_CACHE_SIZE) {
      const oldest = maps.keys().next().value;
      if (oldest !== undefined) maps.delete(oldest);
    }
    maps.set(hash, map);
  }
  return map;
}
