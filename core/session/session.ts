/**
 * The platform-neutral part of a session: its state image, the order of its calls, and the store
 * that keeps the image across restarts. Adapters add the workspace and run the cells.
 */
import type { CellEnvelope } from "../agent/cell.ts";
import { parseBytes } from "../config/units.ts";
import { MAX_SANDBOX_RAM_BYTES } from "../engine/engine.ts";
import { ConfigError, MemoryExceededError } from "../errors.ts";
import type { AttemptState } from "../runtime/attempt.ts";
import { ImageBudget } from "../runtime/memory-budget.ts";
import { imageState, type SessionImage } from "./image.ts";

export type { SessionImage } from "./image.ts";

/** Where a session keeps its image across restarts (a directory on Node, OPFS or IndexedDB). */
export interface SessionStore {
  /** The saved image, or null when none was saved. */
  load(): Promise<Uint8Array | null>;
  /** Replaces the saved image (null: forget it). Must not leave a torn image behind. */
  save(encoded: Uint8Array | null): Promise<void>;
}

/** What a call needs from its session: the state its attempts restore and capture. */
export type SessionCall = (state: AttemptState) => Promise<CellEnvelope>;

/** The default of `sessionImages` until the host sets its own (Session.imageBudget). */
export const DEFAULT_SESSION_IMAGE_BYTES = 2 ** 30;

/**
 * What the session images of this host (one process, one page) may hold together, shared by
 * every session; each adapter sets its default and owner when it loads, and callers may change
 * `totalBytes` (core/runtime/memory-budget.ts, ImageBudget).
 */
export const sessionImages = new ImageBudget(DEFAULT_SESSION_IMAGE_BYTES, "this host");

/**
 * Sets `sessionImages` for a host as it loads: its owner's name, and `setting` (a size such as
 * "512MB", from the host's configuration) or else `defaultBytes`, at most a quarter of the
 * machine's memory where the host knows it.
 */
export function configureSessionImages(
  owner: string,
  defaultBytes: number,
  machineBytes: number | undefined,
  setting?: { name: string; value: string | undefined },
): void {
  sessionImages.owner = owner;
  if (setting?.value !== undefined && setting.value !== "") {
    sessionImages.totalBytes = parseBytes(setting.value, setting.name);
    return;
  }
  const quarter = machineBytes !== undefined && machineBytes > 0 ? machineBytes / 4 : Infinity;
  sessionImages.totalBytes = Math.floor(Math.min(defaultBytes, quarter));
}

/** A session dropped without close() gives its image's bytes back once it is collected. */
const collected = new FinalizationRegistry<object>((holder) => sessionImages.release(holder));

/** An image whose view leaves more than this (and more than itself) of its memory unused is copied. */
const COMPACT_SLACK_BYTES = 16 * 2 ** 20;

/**
 * The image as the host should keep it: a view of a dead sandbox's memory keeps that whole
 * memory alive, so one that uses little of a large memory (a sandbox that grew, then freed) is
 * copied out, and the memory is let go.
 */
function compact(image: SessionImage): SessionImage {
  const unused = image.bytes.buffer.byteLength - image.bytes.byteLength;
  if (unused <= Math.max(COMPACT_SLACK_BYTES, image.bytes.byteLength)) return image;
  return { ...image, bytes: image.bytes.slice() };
}

export class SessionState {
  #image: SessionImage | null;
  /** What this session holds in `sessionImages` is held under this key. */
  readonly #holder = {};
  readonly #store: SessionStore | null;
  #loaded: Promise<void> | null;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(store: SessionStore | null, image: SessionImage | null = null) {
    this.#store = store;
    this.#image = image;
    this.#loaded = store === null || image !== null ? Promise.resolve() : null;
    collected.register(this, this.#holder, this);
    // A fork shares its source's image, already counted: this adds nothing until either changes.
    sessionImages.hold(this.#holder, image?.bytes ?? null, true);
  }

  /** The image now (shared, never changed in place: a fork may hold the same bytes). */
  get image(): SessionImage | null {
    return this.#image;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `work` after every call before it has ended: a session's calls never overlap. */
  serialize<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work);
    this.#queue = next.catch(() => {});
    return next;
  }

  /** One call: restores the image, and keeps the new one only when the whole call succeeded. */
  call(key: string, run: SessionCall): Promise<CellEnvelope> {
    return this.callWith(async (image) => {
      const { state, captured } = imageState(image, key);
      const envelope = await run(state);
      return { envelope, image: captured() };
    });
  }

  /**
   * One call whose sandbox restores and captures elsewhere (a page's worker): `run` gets the
   * image and hands back the new one, which is kept only when the call succeeded.
   */
  callWith(
    run: (
      image: SessionImage | null,
    ) => Promise<{ envelope: CellEnvelope; image: SessionImage | null }>,
  ): Promise<CellEnvelope> {
    return this.serialize(async () => {
      this.#checkOpen();
      await this.#load();
      const { envelope, image: taken } = await run(this.#image);
      if (envelope.success && taken !== null) {
        const image = compact(taken);
        const previous = this.#image;
        const refusal = sessionImages.hold(this.#holder, image.bytes);
        if (refusal !== null) {
          throw new MemoryExceededError(
            `the session's state after this call was not kept: ${refusal}. The session keeps its state from before this call; keep less state (drop large values), or close sessions no longer needed`,
          );
        }
        try {
          await this.#store?.save(encodeImage(image));
        } catch (error) {
          sessionImages.hold(this.#holder, previous?.bytes ?? null, true);
          throw error;
        }
        this.#image = image;
      }
      return envelope;
    });
  }

  /** Forgets the state (the next call starts from a fresh sandbox). */
  reset(): Promise<void> {
    return this.serialize(async () => {
      this.#image = null;
      sessionImages.release(this.#holder);
      this.#loaded = Promise.resolve();
      await this.#store?.save(null);
    });
  }

  /** Writes the image now held to the store (a fork given a store of its own). */
  saveNow(): Promise<void> {
    return this.serialize(async () => {
      if (this.#image !== null) await this.#store?.save(encodeImage(this.#image));
    });
  }

  /** Waits for calls in flight; later calls are refused, and the image is let go. */
  close(): Promise<void> {
    return this.serialize(async () => {
      this.#closed = true;
      this.#image = null;
      sessionImages.release(this.#holder);
      collected.unregister(this);
    });
  }

  /** The image after every call queued so far (for fork). */
  settled(): Promise<SessionImage | null> {
    return this.serialize(async () => {
      this.#checkOpen();
      await this.#load();
      return this.#image;
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new ConfigError("the session is closed");
  }

  #load(): Promise<void> {
    this.#loaded ??= (async () => {
      const encoded = await this.#store?.load();
      const image = encoded ? decodeImage(encoded) : null;
      const refusal = sessionImages.hold(this.#holder, image?.bytes ?? null);
      if (refusal !== null) {
        throw new MemoryExceededError(
          `the session's saved state was not read back: ${refusal}. Close sessions no longer needed, then call again`,
        );
      }
      this.#image = image;
    })().catch((error: unknown) => {
      // Read again at the next call (memory may have been freed by then).
      this.#loaded = null;
      throw error;
    });
    return this.#loaded;
  }
}

const MAGIC = "capsule-session-image/1\n";

/** The image as one byte string: a header line, its facts as JSON, then the memory. */
export function encodeImage(image: SessionImage): Uint8Array {
  const meta = new TextEncoder().encode(
    `${MAGIC}${JSON.stringify({
      runtime: image.runtime,
      context: image.context,
      engineKey: image.engineKey,
      bytes: image.bytes.byteLength,
    })}\n`,
  );
  const encoded = new Uint8Array(meta.byteLength + image.bytes.byteLength);
  encoded.set(meta);
  encoded.set(image.bytes, meta.byteLength);
  return encoded;
}

/** Reads what encodeImage wrote; anything else is a config_error (a store that is not ours). */
export function decodeImage(encoded: Uint8Array): SessionImage {
  const refuse = (why: string) =>
    new ConfigError(`the session store holds no valid state image (${why}); reset() the session`);
  const head = new TextDecoder().decode(encoded.subarray(0, Math.min(encoded.byteLength, 4096)));
  if (!head.startsWith(MAGIC)) throw refuse("unknown format");
  const end = head.indexOf("\n", MAGIC.length);
  if (end < 0) throw refuse("no header");
  let meta: { runtime?: unknown; context?: unknown; engineKey?: unknown; bytes?: unknown };
  try {
    meta = JSON.parse(head.slice(MAGIC.length, end));
  } catch {
    throw refuse("malformed header");
  }
  const offset = new TextEncoder().encode(head.slice(0, end + 1)).byteLength;
  const length = encoded.byteLength - offset;
  if (
    !Number.isSafeInteger(meta.runtime) ||
    !Number.isSafeInteger(meta.context) ||
    typeof meta.engineKey !== "string" ||
    meta.bytes !== length ||
    length > MAX_SANDBOX_RAM_BYTES
  ) {
    throw refuse("inconsistent header");
  }
  return {
    runtime: meta.runtime as number,
    context: meta.context as number,
    engineKey: meta.engineKey,
    bytes: encoded.slice(offset),
  };
}
