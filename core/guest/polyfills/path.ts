import type { ChunkInstaller } from "../chunk.ts";
import { invalidArgType, validateString } from "./node-errors.ts";

export interface ParsedPath {
  root: string;
  dir: string;
  base: string;
  ext: string;
  name: string;
}

export interface PathModule {
  sep: "/";
  delimiter: ":";
  resolve(...paths: string[]): string;
  normalize(path: string): string;
  isAbsolute(path: string): boolean;
  join(...paths: string[]): string;
  relative(from: string, to: string): string;
  toNamespacedPath(path: string): string;
  dirname(path: string): string;
  basename(path: string, suffix?: string): string;
  extname(path: string): string;
  format(parts: Partial<ParsedPath>): string;
  parse(path: string): ParsedPath;
  posix: PathModule;
}

export interface PathExports {
  module: PathModule;
}

/** Folds "." and ".." segments; the result has no leading or trailing "/". */
function normalizeSegments(path: string, allowAboveRoot: boolean): string {
  let result = "";
  let lastSegmentLength = 0;
  let lastSlash = -1;
  let dots = 0;
  for (let i = 0; i <= path.length; i++) {
    const char = i < path.length ? path[i] : "/";
    if (char === "/") {
      if (lastSlash === i - 1 || dots === 1) {
        // An empty or "." segment.
      } else if (dots === 2) {
        if (result.length < 2 || lastSegmentLength !== 2 || !result.endsWith("..")) {
          if (result.length > 0) {
            const index = result.lastIndexOf("/");
            result = index === -1 ? "" : result.slice(0, index);
            lastSegmentLength = result.length - 1 - result.lastIndexOf("/");
            lastSlash = i;
            dots = 0;
            continue;
          }
        }
        if (allowAboveRoot) {
          result += result.length > 0 ? "/.." : "..";
          lastSegmentLength = 2;
        }
      } else {
        const segment = path.slice(lastSlash + 1, i);
        result += result.length > 0 ? `/${segment}` : segment;
        lastSegmentLength = i - lastSlash - 1;
      }
      lastSlash = i;
      dots = 0;
    } else if (char === "." && dots !== -1) {
      dots++;
    } else {
      dots = -1;
    }
  }
  return result;
}

/**
 * Scans the last segment of `path` from `start`: where it begins, where it ends (trailing slashes
 * excluded) and where its extension starts (-1 when it has none, as for ".profile" or "..").
 */
function lastSegment(path: string, start: number): { part: number; end: number; dot: number } {
  let dot = -1;
  let part = 0;
  let end = -1;
  let matchedSlash = true;
  // 0: no dot seen before the last one; 1: another dot; -1: another character.
  let beforeDot = 0;
  for (let i = path.length - 1; i >= start; i--) {
    const char = path[i];
    if (char === "/") {
      if (!matchedSlash) {
        part = i + 1;
        break;
      }
      continue;
    }
    if (end === -1) {
      matchedSlash = false;
      end = i + 1;
    }
    if (char === ".") {
      if (dot === -1) dot = i;
      else if (beforeDot !== 1) beforeDot = 1;
    } else if (dot !== -1) {
      beforeDot = -1;
    }
  }
  const noExtension =
    dot === -1 ||
    end === -1 ||
    beforeDot === 0 ||
    (beforeDot === 1 && dot === end - 1 && dot === part + 1);
  return { part, end, dot: noExtension ? -1 : dot };
}

/** POSIX `path`, as Node's `path.posix` behaves; the working directory comes from `process.cwd()`. */
const install: ChunkInstaller<PathExports> = (ctx) => {
  const cwd = () => ctx.load("process").process.cwd();

  const path: PathModule = {
    sep: "/",
    delimiter: ":",

    resolve(...paths) {
      let resolved = "";
      let absolute = false;
      for (let i = paths.length - 1; i >= -1 && !absolute; i--) {
        const segment = i >= 0 ? paths[i] : cwd();
        validateString(segment, `paths[${i}]`);
        if (segment.length === 0) continue;
        resolved = `${segment}/${resolved}`;
        absolute = segment[0] === "/";
      }
      const normalized = normalizeSegments(resolved, !absolute);
      if (absolute) return `/${normalized}`;
      return normalized.length > 0 ? normalized : ".";
    },

    normalize(p) {
      validateString(p, "path");
      if (p.length === 0) return ".";
      const absolute = p[0] === "/";
      const trailingSlash = p[p.length - 1] === "/";
      let normalized = normalizeSegments(p, !absolute);
      if (normalized.length === 0) {
        if (absolute) return "/";
        return trailingSlash ? "./" : ".";
      }
      if (trailingSlash) normalized += "/";
      return absolute ? `/${normalized}` : normalized;
    },

    isAbsolute(p) {
      validateString(p, "path");
      return p.length > 0 && p[0] === "/";
    },

    join(...paths) {
      let joined: string | undefined;
      for (const segment of paths) {
        validateString(segment, "path");
        if (segment.length > 0) joined = joined === undefined ? segment : `${joined}/${segment}`;
      }
      return joined === undefined ? "." : path.normalize(joined);
    },

    relative(from, to) {
      validateString(from, "from");
      validateString(to, "to");
      if (from === to) return "";
      from = path.resolve(from);
      to = path.resolve(to);
      if (from === to) return "";
      // Both are absolute now; compare them past the leading "/".
      const fromLength = from.length - 1;
      const toLength = to.length - 1;
      const length = Math.min(fromLength, toLength);
      let lastCommonSlash = -1;
      let i = 0;
      for (; i < length; i++) {
        const char = from[1 + i];
        if (char !== to[1 + i]) break;
        if (char === "/") lastCommonSlash = i;
      }
      if (i === length) {
        if (toLength > length) {
          if (to[1 + i] === "/") return to.slice(2 + i);
          if (i === 0) return to.slice(1 + i);
        } else if (fromLength > length) {
          if (from[1 + i] === "/") lastCommonSlash = i;
          else if (i === 0) lastCommonSlash = 0;
        }
      }
      let up = "";
      for (i = 2 + lastCommonSlash; i <= from.length; i++) {
        if (i === from.length || from[i] === "/") up += up.length === 0 ? ".." : "/..";
      }
      return `${up}${to.slice(1 + lastCommonSlash)}`;
    },

    toNamespacedPath: (p) => p,

    dirname(p) {
      validateString(p, "path");
      if (p.length === 0) return ".";
      const hasRoot = p[0] === "/";
      let end = -1;
      let matchedSlash = true;
      for (let i = p.length - 1; i >= 1; i--) {
        if (p[i] === "/") {
          if (!matchedSlash) {
            end = i;
            break;
          }
        } else {
          matchedSlash = false;
        }
      }
      if (end === -1) return hasRoot ? "/" : ".";
      if (hasRoot && end === 1) return "//";
      return p.slice(0, end);
    },

    basename(p, suffix) {
      if (suffix !== undefined) validateString(suffix, "ext");
      validateString(p, "path");
      let start = 0;
      let end = -1;
      let matchedSlash = true;
      if (suffix !== undefined && suffix.length > 0 && suffix.length <= p.length) {
        if (suffix === p) return "";
        let suffixIndex = suffix.length - 1;
        let firstNonSlashEnd = -1;
        for (let i = p.length - 1; i >= 0; i--) {
          const char = p[i];
          if (char === "/") {
            if (!matchedSlash) {
              start = i + 1;
              break;
            }
            continue;
          }
          if (firstNonSlashEnd === -1) {
            matchedSlash = false;
            firstNonSlashEnd = i + 1;
          }
          if (suffixIndex >= 0) {
            if (char === suffix[suffixIndex]) {
              if (--suffixIndex === -1) end = i;
            } else {
              suffixIndex = -1;
              end = firstNonSlashEnd;
            }
          }
        }
        if (start === end) end = firstNonSlashEnd;
        else if (end === -1) end = p.length;
        return p.slice(start, end);
      }
      for (let i = p.length - 1; i >= 0; i--) {
        if (p[i] === "/") {
          if (!matchedSlash) {
            start = i + 1;
            break;
          }
        } else if (end === -1) {
          matchedSlash = false;
          end = i + 1;
        }
      }
      return end === -1 ? "" : p.slice(start, end);
    },

    extname(p) {
      validateString(p, "path");
      const { end, dot } = lastSegment(p, 0);
      return dot === -1 ? "" : p.slice(dot, end);
    },

    format(parts) {
      if (parts === null || typeof parts !== "object") {
        throw invalidArgType("pathObject", "of type object", parts);
      }
      const dir = parts.dir || parts.root;
      const ext = parts.ext ? `${parts.ext[0] === "." ? "" : "."}${parts.ext}` : "";
      const base = parts.base || `${parts.name || ""}${ext}`;
      if (!dir) return base;
      return dir === parts.root ? `${dir}${base}` : `${dir}/${base}`;
    },

    parse(p) {
      validateString(p, "path");
      const parsed: ParsedPath = { root: "", dir: "", base: "", ext: "", name: "" };
      if (p.length === 0) return parsed;
      const absolute = p[0] === "/";
      if (absolute) parsed.root = "/";
      const { part, end, dot } = lastSegment(p, absolute ? 1 : 0);
      if (end !== -1) {
        const start = part === 0 && absolute ? 1 : part;
        parsed.base = p.slice(start, end);
        if (dot === -1) {
          parsed.name = parsed.base;
        } else {
          parsed.name = p.slice(start, dot);
          parsed.ext = p.slice(dot, end);
        }
      }
      if (part > 0) parsed.dir = p.slice(0, part - 1);
      else if (absolute) parsed.dir = "/";
      return parsed;
    },

    posix: undefined as unknown as PathModule,
  };
  path.posix = path;
  return { module: path };
};
export default install;
