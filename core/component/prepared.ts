import { CompileError } from "../errors.ts";

/**
 * A component prepared for a page: what `jco transpile` made of it (the glue and its core
 * modules, the engine's metered by meter.ts) in one file, so a page runs it with no transpiler
 * and no binaryen. Layout: the magic line, the manifest's length (4 bytes, little-endian), the
 * manifest (JSON), then each file's bytes in the manifest's order.
 */

export const PREPARED_MAGIC = "capsule-prepared-component\n";
export const PREPARED_FORMAT = 1;
/** A manifest is a few hundred bytes; anything far larger is not one. */
const MAX_MANIFEST_BYTES = 64 * 1024;
const FILE_NAME = /^[A-Za-z0-9_.-]{1,100}\.(wasm|js)$/;

export interface PreparedManifest {
  format: typeof PREPARED_FORMAT;
  /** SHA-256 (hex) of the component it was made from. */
  component_sha256: string;
  /** The glue module (jco's `instantiate`, sync instantiation). */
  glue: string;
  /** The engine core module, metered, its memory imported as `capsule.memory`. */
  engine: string;
  memoryMinPages: number;
  files: { name: string; bytes: number }[];
}

export interface PreparedComponent {
  manifest: PreparedManifest;
  files: Map<string, Uint8Array>;
}

const encoder = new TextEncoder();

export function encodePrepared(manifest: PreparedManifest, files: Map<string, Uint8Array>) {
  const head = encoder.encode(PREPARED_MAGIC);
  const json = encoder.encode(JSON.stringify(manifest));
  let total = head.byteLength + 4 + json.byteLength;
  for (const file of manifest.files) total += file.bytes;
  const out = new Uint8Array(total);
  out.set(head, 0);
  new DataView(out.buffer).setUint32(head.byteLength, json.byteLength, true);
  out.set(json, head.byteLength + 4);
  let at = head.byteLength + 4 + json.byteLength;
  for (const file of manifest.files) {
    const bytes = files.get(file.name);
    if (bytes === undefined || bytes.byteLength !== file.bytes)
      throw new Error(`prepared component: ${file.name} is missing or of another size`);
    out.set(bytes, at);
    at += bytes.byteLength;
  }
  return out;
}

/** Reads a prepared component; a CompileError naming `name` says what is wrong with it. */
export function decodePrepared(bytes: Uint8Array, name: string): PreparedComponent {
  const bad = (why: string) => new CompileError(`${name} is not a prepared component: ${why}`);
  const head = encoder.encode(PREPARED_MAGIC);
  if (bytes.byteLength < head.byteLength + 4 || !head.every((byte, i) => bytes[i] === byte)) {
    throw bad(`it does not start with ${JSON.stringify(PREPARED_MAGIC.trim())}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(head.byteLength, true);
  const start = head.byteLength + 4;
  if (length > MAX_MANIFEST_BYTES || start + length > bytes.byteLength) {
    throw bad(`its manifest length ${length} does not fit`);
  }
  let manifest: PreparedManifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(bytes.subarray(start, start + length)));
  } catch {
    throw bad("its manifest is not JSON");
  }
  if (manifest === null || typeof manifest !== "object" || manifest.format !== PREPARED_FORMAT) {
    throw bad(`its format is ${JSON.stringify(manifest?.format)}, not ${PREPARED_FORMAT}`);
  }
  if (!Array.isArray(manifest.files) || manifest.files.length === 0 || manifest.files.length > 64) {
    throw bad("its manifest lists no files");
  }
  const files = new Map<string, Uint8Array>();
  let at = start + length;
  for (const file of manifest.files) {
    if (
      typeof file?.name !== "string" ||
      !FILE_NAME.test(file.name) ||
      files.has(file.name) ||
      !Number.isSafeInteger(file.bytes) ||
      file.bytes < 0 ||
      at + file.bytes > bytes.byteLength
    ) {
      throw bad(`its file entry ${JSON.stringify(file)?.slice(0, 200)} is not valid`);
    }
    files.set(file.name, bytes.subarray(at, at + file.bytes));
    at += file.bytes;
  }
  if (at !== bytes.byteLength) throw bad(`${bytes.byteLength - at} bytes follow its last file`);
  if (!manifest.glue?.endsWith?.(".js") || !files.has(manifest.glue)) {
    throw bad(`its glue ${JSON.stringify(manifest.glue)} is not among its files`);
  }
  if (!manifest.engine?.endsWith?.(".wasm") || !files.has(manifest.engine)) {
    throw bad(`its engine ${JSON.stringify(manifest.engine)} is not among its files`);
  }
  if (
    !Number.isSafeInteger(manifest.memoryMinPages) ||
    manifest.memoryMinPages < 1 ||
    manifest.memoryMinPages > 65536
  ) {
    throw bad(`its memoryMinPages ${JSON.stringify(manifest.memoryMinPages)} is not valid`);
  }
  if (
    typeof manifest.component_sha256 !== "string" ||
    !/^[0-9a-f]{64}$/.test(manifest.component_sha256)
  ) {
    throw bad("its component_sha256 is not a SHA-256 in hex");
  }
  return { manifest, files };
}
