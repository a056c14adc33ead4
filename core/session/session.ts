/**
 * The platform-neutral part of a session: its state image, the order of its calls, and the store
 * that keeps the image across restarts. Adapters add the workspace and run the cells.
 */
import type { CellEnvelope } from "../agent/cell.ts";
import { MAX_SANDBOX_RAM_BYTES } from "../engine/engine.ts";
import { ConfigError } from "../errors.ts";
import type { AttemptState } from "../runtime/attempt.ts";
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

export class SessionState {
  #image: SessionImage | null;
  readonly #store: SessionStore | null;
  #loaded: Promise<void> | null;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(store: SessionStore | null, image: SessionImage | null = null) {
    this.#store = store;
    this.#image = image;
    this.#loaded = store === null || image !== null ? Promise.resolve() : null;
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
      const { envelope, image } = await run(this.#image);
      if (envelope.success && image !== null) {
        await this.#store?.save(encodeImage(image));
        this.#image = image;
      }
      return envelope;
    });
  }

  /** Forgets the state (the next call starts from a fresh sandbox). */
  reset(): Promise<void> {
    return this.serialize(async () => {
      this.#image = null;
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

  /** Waits for calls in flight; later calls are refused. */
  close(): Promise<void> {
    return this.serialize(async () => {
      this.#closed = true;
    });
  }

  /** The image after every call queued so far (for fork). */
  settled(): Promise<SessionImage | null> {
    return this.serialize(async () => {
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
      this.#image = encoded ? decodeImage(encoded) : null;
    })();
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
