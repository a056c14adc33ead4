/**
 * A request's files: an in-memory tree seeded from the request's `files`, shared by the task and
 * its sub-tasks, and the files they changed, returned in the response. Paths are relative to the
 * project root ("data/in.txt"); a task reaches them only through its allowedFiles, as on disk.
 */

import { fromBase64, toBase64 } from "@exodus/bytes/base64.js";
import { createMemoryFileSystem, type FileNode, MemoryTree } from "../../core/files/memory-tree.ts";
import type { FileSystemHost } from "../../core/host.ts";
import { splitPath } from "../../core/policy/paths.ts";

/** A file's contents in JSON: text (UTF-8) as a string, any bytes as `{ base64 }`. */
export type FileContent = string | { base64: string };

export class RequestFileTree {
  readonly tree: MemoryTree;
  /** Each file as the request gave it, by path: what `changes()` compares against. */
  readonly #seeded = new Map<string, FileNode>();

  /** `files` must be checked already (parseRunRequest): paths canonical, within `maxBytes`. */
  constructor(files: ReadonlyMap<string, Uint8Array>, maxBytes: number) {
    this.tree = new MemoryTree({ maxBytes });
    const now = Date.now();
    for (const [path, data] of files) {
      const segments = splitPath(path);
      const name = segments.pop();
      const directory = this.tree.ensureDirectory(segments);
      if (name === undefined || directory === undefined || directory.children.has(name)) {
        throw new TypeError(`files: ${JSON.stringify(path)} clashes with another file`);
      }
      const node: FileNode = { kind: "file", data, mtimeMs: now, birthtimeMs: now, dirty: false };
      if (!this.tree.admit(node)) {
        throw new TypeError(`files: more than ${maxBytes} bytes in all`);
      }
      directory.children.set(name, node);
      this.#seeded.set(path, node);
    }
  }

  /**
   * A granted directory the request sent no files for starts empty, so a task can write its
   * output without the caller sending a placeholder. False when a file stands in its place.
   */
  ensureDirectory(hostPath: string): boolean {
    return this.tree.ensureDirectory(splitPath(hostPath)) !== undefined;
  }

  fileSystem(): FileSystemHost {
    return createMemoryFileSystem(this.tree);
  }

  /** Files written or created (their contents) and files removed (null), by path. */
  changes(): Record<string, FileContent | null> {
    const changed: Record<string, FileContent | null> = {};
    const present = new Set<string>();
    for (const [hostPath, node] of this.tree.files()) {
      const path = hostPath.slice(1);
      present.add(path);
      if (node.dirty || this.#seeded.get(path) !== node)
        changed[path] = encodeFileContent(node.data);
    }
    for (const path of this.#seeded.keys()) {
      if (!present.has(path)) changed[path] = null;
    }
    return changed;
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Text when the bytes are UTF-8 without control characters other than tab and line breaks (JSON
 * would spell each of those in six characters), else base64.
 */
export function encodeFileContent(data: Uint8Array): FileContent {
  try {
    const text = strictUtf8.decode(data);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
    if (!/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) return text;
  } catch {
    // Not UTF-8: bytes.
  }
  return { base64: toBase64(data) };
}

/** The bytes of standard base64 (padding optional); null when `text` is not base64. */
export function decodeBase64(text: string): Uint8Array | null {
  try {
    return fromBase64(text, { padding: "both" });
  } catch {
    return null;
  }
}
