/**
 * Disk cache entries signed with a key of this user's: the compiled bundles (compile.ts) and the
 * Python files' task lists (python/task-lists.ts). A task that can write a cache directory (a
 * grant or mount over it) cannot produce a valid MAC, nor move a valid entry to another key's
 * file, so whatever it plants is ignored and made again.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import {
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

/** An entry as stored: its JSON, and an HMAC over its cache key and that JSON. */
interface SignedEntry {
  mac: string;
  body: string;
}

function entryMac(key: Buffer, diskKey: string, body: string): Buffer {
  return createHmac("sha256", key).update(`${diskKey}\0${body}`).digest();
}

/**
 * The entry stored for `diskKey` in `file`, parsed; undefined when missing, unsigned, altered,
 * larger than `maxBytes`, or not a regular file (a link to /dev/zero or a FIFO is never read).
 */
export function readSigned(file: string, diskKey: string, key: Buffer, maxBytes: number): unknown {
  let text: string;
  let modified: number;
  try {
    const stat = statSync(file, { throwIfNoEntry: false });
    if (stat === undefined || !stat.isFile() || stat.size > maxBytes) return undefined;
    text = readFileSync(file, "utf8");
    modified = stat.mtimeMs;
  } catch {
    return undefined;
  }
  try {
    const signed = JSON.parse(text) as SignedEntry;
    if (typeof signed?.mac !== "string" || typeof signed.body !== "string") return undefined;
    const expected = entryMac(key, diskKey, signed.body);
    const given = Buffer.from(signed.mac, "hex");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    const entry = JSON.parse(signed.body);
    markUsed(file, modified);
    return entry;
  } catch {
    return undefined;
  }
}

/**
 * Stores `entry` for `diskKey` in `file` (in `dir`, made 0700 if missing). Temp file + rename, so a
 * concurrent reader sees the old entry or the new one, never half of one. Throws what failed. Then
 * trims `dir` to `bounds`.
 */
export function writeSigned(
  dir: string,
  file: string,
  diskKey: string,
  key: Buffer,
  entry: unknown,
  bounds: CacheBounds = DEFAULT_CACHE_BOUNDS,
): void {
  const temp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const body = JSON.stringify(entry);
    const signed: SignedEntry = { mac: entryMac(key, diskKey, body).toString("hex"), body };
    writeFileSync(temp, JSON.stringify(signed), { mode: 0o600 });
    renameSync(temp, file);
  } catch (error) {
    try {
      rmSync(temp, { force: true });
    } catch {
      // The temp file was never created (the directory itself is the problem).
    }
    throw error;
  }
  trimCache(dir, bounds);
}

/** How much a cache directory keeps: the least recently used entries go past either bound. */
export interface CacheBounds {
  entries: number;
  bytes: number;
}

/**
 * Every edit of a task file makes a new entry, so without a bound an agent iterating on its code
 * fills the disk. 256 entries or 256 MiB (a bundle is typically 10 KB-2 MB).
 */
export const DEFAULT_CACHE_BOUNDS: CacheBounds = { entries: 256, bytes: 256 * 1024 * 1024 };

/** Only names this module writes are ever removed: a cache directory may be shared. */
const ENTRY_NAME = /^(?:python-tasks-)?[0-9a-f]{64}\.json$/;
const TEMP_NAME = /^(?:python-tasks-)?[0-9a-f]{64}\.json\.\d+\.[0-9a-f]{12}\.tmp$/;
/** A temp file this old was left by a process killed mid-write. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/** An entry read is marked used (its mtime) at most this often: one write per hour per entry. */
const MARK_USED_EVERY_MS = 60 * 60 * 1000;

/** `modified` is the entry's mtime as read, so a hit costs no second stat. */
function markUsed(file: string, modified: number): void {
  const now = Date.now();
  if (now - modified < MARK_USED_EVERY_MS) return;
  try {
    utimesSync(file, new Date(now), new Date(now));
  } catch {
    // A read-only cache is still a cache.
  }
}

/**
 * Removes the least recently used entries (by mtime: written, or marked used when read) past
 * `bounds`, and temp files a killed writer left. Links are removed, never followed. Best effort:
 * what cannot be listed or removed stays.
 */
export function trimCache(dir: string, bounds: CacheBounds = DEFAULT_CACHE_BOUNDS): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const now = Date.now();
  const entries: Array<{ file: string; bytes: number; used: number }> = [];
  for (const name of names) {
    const entry = ENTRY_NAME.test(name);
    if (!entry && !TEMP_NAME.test(name)) continue;
    const file = path.join(dir, name);
    const stat = statQuietly(file);
    if (stat === undefined || stat.isDirectory()) continue;
    if (entry) entries.push({ file, bytes: stat.size, used: stat.mtimeMs });
    else if (now - stat.mtimeMs > STALE_TEMP_MS) removeQuietly(file);
  }
  entries.sort((a, b) => b.used - a.used);
  let count = 0;
  let bytes = 0;
  for (const entry of entries) {
    count++;
    bytes += entry.bytes;
    if (count > bounds.entries || bytes > bounds.bytes) removeQuietly(entry.file);
  }
}

/** The entry's own status (a link is not followed); undefined when gone or unreadable. */
function statQuietly(file: string): Stats | undefined {
  try {
    return lstatSync(file, { throwIfNoEntry: false });
  } catch {
    // Trimming is best effort: the write that called it succeeded and must not be reported failed.
    return undefined;
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Gone already (another process trimmed too), or not ours to remove.
  }
}

const CACHE_KEY_BYTES = 32;
const cacheKeys = new Map<string, Buffer | null>();

/**
 * Per user, outside every project: under a `.capsule` folder, which no grant or mount can show
 * to a guest (core/policy/paths.ts), in the home directory.
 */
export function defaultCacheKeyFile(): string {
  return path.join(homedir(), ".capsule", "cache-key");
}

/**
 * The key that signs disk cache entries, created on first use (0600, in a 0700 folder). Null, and
 * no disk cache, when it cannot be made or is not this user's alone: an entry is never trusted
 * without it. `warn` hears why, once per process.
 */
export function loadCacheKey(keyFile: string, warn: (message: string) => void): Buffer | null {
  const known = cacheKeys.get(keyFile);
  if (known !== undefined) return known;
  let key: Buffer | null = null;
  try {
    key = readCacheKey(keyFile) ?? createCacheKey(keyFile);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    warn(`compile cache key ${keyFile} cannot be used (${reason}); compiling without a disk cache`);
  }
  cacheKeys.set(keyFile, key);
  return key;
}

/** Forgets the keys read (tests). */
export function forgetCacheKeys(): void {
  cacheKeys.clear();
}

function readCacheKey(keyFile: string): Buffer | undefined {
  const stat = statSync(keyFile, { throwIfNoEntry: false });
  if (stat === undefined) return undefined;
  const ownUid = process.getuid?.();
  const private_ = (stat.mode & 0o077) === 0 && (ownUid === undefined || stat.uid === ownUid);
  if (!stat.isFile() || !private_) throw new Error("not a file readable by this user alone");
  const key = readFileSync(keyFile);
  if (key.length < CACHE_KEY_BYTES) throw new Error("shorter than 32 bytes");
  return key;
}

/** Written whole under a temporary name, then linked into place: racing processes agree on one. */
function createCacheKey(keyFile: string): Buffer {
  mkdirSync(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  const temp = `${keyFile}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(temp, randomBytes(CACHE_KEY_BYTES), { mode: 0o600, flag: "wx" });
  try {
    linkSync(temp, keyFile);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    unlinkSync(temp);
  }
  return readCacheKey(keyFile) as Buffer;
}
