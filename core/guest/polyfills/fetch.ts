import type { ChunkContext, ChunkInstaller } from "../chunk.ts";

/**
 * WHATWG fetch over the host bridge: the whole request goes to the host in one call (method, URL,
 * headers, body bytes) and the whole response comes back buffered, so every body here is bytes in
 * memory. The host applies the task's network policy; this side only shapes the web API.
 * Also here, because fetch needs them: Headers, Request, Response, Blob, File, FormData, Event,
 * EventTarget, AbortController and AbortSignal.
 */

// One chunk evaluation per sandbox, so module state is per sandbox too.
let ctx: ChunkContext;
let lastFetchId = 0;

const INTERNAL = Symbol("internal");
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NORMALISED_METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);
const REDIRECT_MODES = new Set(["follow", "error", "manual"]);

const encode = (text: string): Uint8Array => new (ctx.load("encoding").TextEncoder)().encode(text);
const decode = (bytes: Uint8Array): string =>
  new (ctx.load("encoding").TextDecoder)().decode(bytes);
const domException = (message: string, name: string): Error =>
  new (ctx.load("dom-exception").DOMException)(message, name);
const reportUncaught = (error: unknown) => ctx.load("console").reportUncaught(error);
const parseUrl = (input: string, base?: string): URL => new (ctx.load("url").URL)(input, base);
const isUrlSearchParams = (value: unknown): value is URLSearchParams =>
  value instanceof ctx.load("url").URLSearchParams;

function copyBytes(source: ArrayBuffer | ArrayBufferView): Uint8Array {
  return ArrayBuffer.isView(source)
    ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength).slice()
    : new Uint8Array(source.slice(0));
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object" || typeof value === "function") {
    return Object.prototype.toString.call(value).slice(8, -1);
  }
  return String(value);
}

// ---- Event, EventTarget -----------------------------------------------------------------------

type ListenerCallback = ((event: Event) => unknown) | { handleEvent(event: Event): unknown };

interface Listener {
  callback: ListenerCallback;
  capture: boolean;
  once: boolean;
  removed: boolean;
}

let setEventTarget: (event: Event, target: EventTarget | null) => void;
let endDispatch: (event: Event) => void;
let eventStopped: (event: Event) => boolean;

class Event {
  static readonly NONE = 0;
  static readonly CAPTURING_PHASE = 1;
  static readonly AT_TARGET = 2;
  static readonly BUBBLING_PHASE = 3;
  #type: string;
  #bubbles: boolean;
  #cancelable: boolean;
  #composed: boolean;
  #target: EventTarget | null = null;
  #dispatching = false;
  #canceled = false;
  #stopped = false;
  #timeStamp = ctx.host.monotonic();

  static {
    setEventTarget = (event, target) => {
      event.#target = target;
      event.#dispatching = true;
    };
    endDispatch = (event) => {
      event.#dispatching = false;
    };
    eventStopped = (event) => event.#stopped;
  }

  constructor(type: string, init?: EventInit) {
    // biome-ignore lint/complexity/noArguments: a missing argument differs from undefined here
    if (arguments.length < 1) throw new TypeError("Event: the type argument is required");
    this.#type = String(type);
    this.#bubbles = Boolean(init?.bubbles);
    this.#cancelable = Boolean(init?.cancelable);
    this.#composed = Boolean(init?.composed);
  }
  get type(): string {
    return this.#type;
  }
  get target(): EventTarget | null {
    return this.#target;
  }
  get srcElement(): EventTarget | null {
    return this.#target;
  }
  get currentTarget(): EventTarget | null {
    return this.#dispatching ? this.#target : null;
  }
  get eventPhase(): number {
    return this.#dispatching ? 2 : 0;
  }
  get bubbles(): boolean {
    return this.#bubbles;
  }
  get cancelable(): boolean {
    return this.#cancelable;
  }
  get composed(): boolean {
    return this.#composed;
  }
  get defaultPrevented(): boolean {
    return this.#canceled;
  }
  get returnValue(): boolean {
    return !this.#canceled;
  }
  get cancelBubble(): boolean {
    return this.#stopped;
  }
  get isTrusted(): boolean {
    return false;
  }
  get timeStamp(): number {
    return this.#timeStamp;
  }
  composedPath(): EventTarget[] {
    return this.#dispatching && this.#target ? [this.#target] : [];
  }
  preventDefault(): void {
    if (this.#cancelable) this.#canceled = true;
  }
  stopPropagation(): void {}
  stopImmediatePropagation(): void {
    this.#stopped = true;
  }
  get [Symbol.toStringTag](): string {
    return "Event";
  }
}

function listenerOptions(options: unknown): { capture: boolean; once: boolean; signal?: unknown } {
  if (typeof options === "object" && options !== null) {
    const record = options as Record<string, unknown>;
    return { capture: Boolean(record.capture), once: Boolean(record.once), signal: record.signal };
  }
  return { capture: Boolean(options), once: false };
}

class EventTarget {
  #listeners = new Map<string, Listener[]>();

  addEventListener(type: string, callback: ListenerCallback | null, options?: unknown): void {
    if (callback === null || callback === undefined) return;
    const { capture, once, signal } = listenerOptions(options);
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `addEventListener: options.signal must be an AbortSignal, got ${describe(signal)}`,
      );
    }
    if (signal?.aborted) return;
    const key = String(type);
    const list = this.#listeners.get(key) ?? [];
    if (list.some((entry) => entry.callback === callback && entry.capture === capture)) return;
    const listener: Listener = { callback, capture, once, removed: false };
    list.push(listener);
    this.#listeners.set(key, list);
    if (signal) onAbort(signal, () => this.removeEventListener(key, callback, { capture }));
  }

  removeEventListener(type: string, callback: ListenerCallback | null, options?: unknown): void {
    const { capture } = listenerOptions(options);
    const list = this.#listeners.get(String(type));
    if (!list) return;
    const index = list.findIndex(
      (entry) => entry.callback === callback && entry.capture === capture,
    );
    if (index === -1) return;
    (list[index] as Listener).removed = true;
    list.splice(index, 1);
  }

  dispatchEvent(event: Event): boolean {
    if (!(event instanceof Event)) {
      throw new TypeError(`dispatchEvent: argument must be an Event, got ${describe(event)}`);
    }
    setEventTarget(event, this);
    try {
      const handler = (this as unknown as Record<string, unknown>)[`on${event.type}`];
      if (typeof handler === "function" && this instanceof AbortSignal) {
        callListener(handler as ListenerCallback, this, event);
      }
      for (const listener of [...(this.#listeners.get(event.type) ?? [])]) {
        if (eventStopped(event)) break;
        if (listener.removed) continue;
        if (listener.once) this.removeEventListener(event.type, listener.callback, listener);
        callListener(listener.callback, this, event);
      }
    } finally {
      endDispatch(event);
    }
    return !event.defaultPrevented;
  }

  get [Symbol.toStringTag](): string {
    return "EventTarget";
  }
}

function callListener(callback: ListenerCallback, target: object, event: Event) {
  try {
    if (typeof callback === "function") callback.call(target, event);
    else if (typeof callback?.handleEvent === "function") callback.handleEvent(event);
  } catch (error) {
    reportUncaught(error);
  }
}

// ---- AbortController, AbortSignal -------------------------------------------------------------

let onAbort: (signal: AbortSignal, algorithm: () => void) => () => void;
let signalAbort: (signal: AbortSignal, reason: unknown) => void;
let newSignal: () => AbortSignal;

class AbortSignal extends EventTarget {
  #aborted = false;
  #reason: unknown;
  #algorithms = new Set<() => void>();
  onabort: ((this: AbortSignal, event: Event) => unknown) | null = null;

  static {
    newSignal = () => new AbortSignal(INTERNAL);
    onAbort = (signal, algorithm) => {
      signal.#algorithms.add(algorithm);
      return () => signal.#algorithms.delete(algorithm);
    };
    signalAbort = (signal, reason) => {
      if (signal.#aborted) return;
      signal.#aborted = true;
      signal.#reason =
        reason === undefined ? domException("This operation was aborted", "AbortError") : reason;
      const algorithms = [...signal.#algorithms];
      signal.#algorithms.clear();
      for (const algorithm of algorithms) algorithm();
      signal.dispatchEvent(new Event("abort"));
    };
  }

  constructor(key?: unknown) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor: use new AbortController()");
    super();
  }
  get aborted(): boolean {
    return this.#aborted;
  }
  get reason(): unknown {
    return this.#reason;
  }
  throwIfAborted(): void {
    if (this.#aborted) throw this.#reason;
  }

  static abort(reason?: unknown): AbortSignal {
    const signal = newSignal();
    signalAbort(signal, reason);
    return signal;
  }

  static timeout(milliseconds: number): AbortSignal {
    const ms = Number(milliseconds);
    if (!Number.isFinite(ms) || ms < 0 || ms > Number.MAX_SAFE_INTEGER) {
      throw new TypeError(
        `AbortSignal.timeout: ${describe(milliseconds)} is not a valid number of milliseconds (0 to 2^53-1)`,
      );
    }
    const signal = newSignal();
    ctx.load("timers").setTimeout(() => {
      signalAbort(signal, domException("The operation was aborted due to timeout", "TimeoutError"));
    }, Math.trunc(ms));
    return signal;
  }

  static any(signals: Iterable<AbortSignal>): AbortSignal {
    const sources = [...signals];
    for (const source of sources) {
      if (!(source instanceof AbortSignal)) {
        throw new TypeError(
          `AbortSignal.any: every item must be an AbortSignal, got ${describe(source)}`,
        );
      }
    }
    const signal = newSignal();
    const aborted = sources.find((source) => source.aborted);
    if (aborted) {
      signalAbort(signal, aborted.reason);
      return signal;
    }
    const removers: (() => void)[] = [];
    for (const source of sources) {
      removers.push(
        onAbort(source, () => {
          for (const remove of removers) remove();
          signalAbort(signal, source.reason);
        }),
      );
    }
    return signal;
  }

  override get [Symbol.toStringTag](): string {
    return "AbortSignal";
  }
}

class AbortController {
  #signal = newSignal();
  get signal(): AbortSignal {
    return this.#signal;
  }
  abort(reason?: unknown): void {
    signalAbort(this.#signal, reason);
  }
  get [Symbol.toStringTag](): string {
    return "AbortController";
  }
}

// ---- Blob, File -------------------------------------------------------------------------------

let blobBytes: (blob: Blob) => Uint8Array;

function normaliseType(type: unknown): string {
  const text = type === undefined ? "" : String(type);
  return /^[\u0020-\u007e]*$/.test(text) ? text.toLowerCase() : "";
}

class Blob {
  #bytes: Uint8Array;
  #type: string;

  static {
    blobBytes = (blob) => blob.#bytes;
  }

  constructor(parts?: Iterable<unknown>, options?: { type?: string; endings?: string }) {
    const chunks: Uint8Array[] = [];
    if (parts !== undefined && parts !== null) {
      if (typeof (parts as Iterable<unknown>)[Symbol.iterator] !== "function") {
        throw new TypeError(`Blob: parts must be an iterable, got ${describe(parts)}`);
      }
      for (const part of parts) {
        if (part instanceof Blob) chunks.push(part.#bytes);
        else if (part instanceof ArrayBuffer || ArrayBuffer.isView(part))
          chunks.push(copyBytes(part));
        else {
          let text = String(part);
          if (options?.endings === "native") text = text.replace(/\r\n|\r/g, "\n");
          chunks.push(encode(text));
        }
      }
    }
    this.#bytes = concatBytes(chunks);
    this.#type = normaliseType(options?.type);
  }
  get size(): number {
    return this.#bytes.length;
  }
  get type(): string {
    return this.#type;
  }
  slice(start?: number, end?: number, contentType?: string): Blob {
    const blob = new Blob([], { type: contentType });
    blob.#bytes = this.#bytes.slice(start, end);
    return blob;
  }
  text(): Promise<string> {
    return Promise.resolve(decode(this.#bytes));
  }
  arrayBuffer(): Promise<ArrayBuffer> {
    return Promise.resolve(this.#bytes.slice().buffer);
  }
  bytes(): Promise<Uint8Array> {
    return Promise.resolve(this.#bytes.slice());
  }
  stream(): BodyStream {
    return new BodyStream(INTERNAL, { bytes: this.#bytes, used: false, stream: null });
  }
  get [Symbol.toStringTag](): string {
    return "Blob";
  }
}

class File extends Blob {
  #name: string;
  #lastModified: number;
  constructor(
    parts: Iterable<unknown>,
    name: string,
    options?: { type?: string; endings?: string; lastModified?: number },
  ) {
    // biome-ignore lint/complexity/noArguments: a missing argument differs from undefined here
    if (arguments.length < 2) throw new TypeError("File: parts and name are required");
    super(parts, options);
    this.#name = String(name);
    this.#lastModified =
      options?.lastModified === undefined ? Date.now() : Number(options.lastModified);
  }
  get name(): string {
    return this.#name;
  }
  get lastModified(): number {
    return this.#lastModified;
  }
  get webkitRelativePath(): string {
    return "";
  }
  override get [Symbol.toStringTag](): string {
    return "File";
  }
}

// ---- FormData ---------------------------------------------------------------------------------

type FormValue = string | File;

function toFormValue(value: unknown, filename: unknown, present: boolean): FormValue {
  if (!(value instanceof Blob)) return String(value);
  if (value instanceof File && !present) return value;
  const name = present ? String(filename) : value instanceof File ? value.name : "blob";
  const options: { type: string; lastModified?: number } = { type: value.type };
  if (value instanceof File) options.lastModified = value.lastModified;
  return new File([value], name, options);
}

class FormData {
  #entries: [string, FormValue][] = [];

  constructor(form?: unknown) {
    if (form !== undefined) {
      throw new TypeError(
        "FormData: there are no HTML forms here; call new FormData() with no argument",
      );
    }
  }
  append(name: string, value: unknown, filename?: string): void {
    // biome-ignore lint/complexity/noArguments: a missing filename differs from undefined here
    this.#entries.push([String(name), toFormValue(value, filename, arguments.length > 2)]);
  }
  set(name: string, value: unknown, filename?: string): void {
    const key = String(name);
    // biome-ignore lint/complexity/noArguments: a missing filename differs from undefined here
    const entry: [string, FormValue] = [key, toFormValue(value, filename, arguments.length > 2)];
    const first = this.#entries.findIndex(([entryName]) => entryName === key);
    if (first === -1) {
      this.#entries.push(entry);
      return;
    }
    this.#entries = this.#entries.filter(
      ([entryName], index) => entryName !== key || index === first,
    );
    this.#entries[first] = entry;
  }
  get(name: string): FormValue | null {
    const key = String(name);
    return this.#entries.find(([entryName]) => entryName === key)?.[1] ?? null;
  }
  getAll(name: string): FormValue[] {
    const key = String(name);
    return this.#entries.filter(([entryName]) => entryName === key).map(([, value]) => value);
  }
  has(name: string): boolean {
    const key = String(name);
    return this.#entries.some(([entryName]) => entryName === key);
  }
  delete(name: string): void {
    const key = String(name);
    this.#entries = this.#entries.filter(([entryName]) => entryName !== key);
  }
  *entries(): IterableIterator<[string, FormValue]> {
    for (const [name, value] of this.#entries) yield [name, value];
  }
  *keys(): IterableIterator<string> {
    for (const [name] of this.#entries) yield name;
  }
  *values(): IterableIterator<FormValue> {
    for (const [, value] of this.#entries) yield value;
  }
  forEach(callback: (value: FormValue, name: string, form: FormData) => void, thisArg?: unknown) {
    for (const [name, value] of this.#entries) callback.call(thisArg, value, name, this);
  }
  [Symbol.iterator](): IterableIterator<[string, FormValue]> {
    return this.entries();
  }
  get [Symbol.toStringTag](): string {
    return "FormData";
  }
}

const escapeName = (name: string) =>
  name.replace(/\r/g, "%0D").replace(/\n/g, "%0A").replace(/"/g, "%22");

function encodeMultipart(form: FormData): { bytes: Uint8Array; type: string } {
  let random = "";
  for (const byte of new Uint8Array(ctx.host.randomBytes(12)))
    random += (byte + 256).toString(16).slice(1);
  const boundary = `----formdata-capsule-${random}`;
  const parts: Uint8Array[] = [];
  for (const [name, value] of form) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(name.replace(/\r\n|\r|\n/g, "\r\n"))}"`;
    if (typeof value === "string") {
      parts.push(encode(`${head}\r\n\r\n${value.replace(/\r\n|\r|\n/g, "\r\n")}\r\n`));
    } else {
      head += `; filename="${escapeName(value.name)}"\r\nContent-Type: ${value.type || "application/octet-stream"}\r\n\r\n`;
      parts.push(encode(head), blobBytes(value), encode("\r\n"));
    }
  }
  parts.push(encode(`--${boundary}--\r\n`));
  return { bytes: concatBytes(parts), type: `multipart/form-data; boundary=${boundary}` };
}

/** Parses a multipart/form-data body; throws TypeError on malformed input, as fetch does. */
function decodeMultipart(bytes: Uint8Array, boundary: string): FormData {
  // Latin-1 keeps one character per byte, so string offsets are byte offsets.
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  const form = new FormData();
  const delimiter = `--${boundary}`;
  let position = text.indexOf(delimiter);
  if (position === -1) throw new TypeError("formData: the multipart body has no boundary line");
  for (;;) {
    position += delimiter.length;
    if (text.startsWith("--", position)) return form;
    const headEnd = text.indexOf("\r\n\r\n", position);
    const next = text.indexOf(`\r\n${delimiter}`, headEnd);
    if (headEnd === -1 || next === -1) {
      throw new TypeError("formData: the multipart body is truncated");
    }
    const headers = decode(bytes.subarray(position, headEnd));
    const disposition = /content-disposition:[^\r\n]*/i.exec(headers)?.[0] ?? "";
    const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
    if (name === undefined) throw new TypeError("formData: a multipart part has no name");
    const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
    const content = bytes.subarray(headEnd + 4, next);
    if (filename === undefined) {
      form.append(name, decode(content));
    } else {
      const type = /content-type:\s*([^\r\n]*)/i.exec(headers)?.[1] ?? "";
      form.append(name, new File([content], filename, { type }));
    }
    position = next + 2;
  }
}

// ---- Headers ----------------------------------------------------------------------------------

type Guard = "none" | "request" | "response" | "immutable";
type HeadersInit = Headers | Iterable<Iterable<string>> | Record<string, string>;

let headerList: (headers: Headers) => [string, string][];
let setGuard: (headers: Headers, guard: Guard) => void;

function headerName(name: unknown): string {
  const text = String(name);
  if (!TOKEN.test(text))
    throw new TypeError(`Headers: ${JSON.stringify(text)} is not a valid header name`);
  return text.toLowerCase();
}

function headerValue(value: unknown): string {
  const text = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (/[\0\r\n]/.test(text)) {
    throw new TypeError(
      `Headers: ${JSON.stringify(text)} is not a valid header value (no CR, LF or NUL)`,
    );
  }
  return text;
}

class Headers {
  #list: [string, string][] = [];
  #guard: Guard = "none";

  static {
    headerList = (headers) => headers.#list;
    setGuard = (headers, guard) => {
      headers.#guard = guard;
    };
  }

  constructor(init?: HeadersInit) {
    if (init === undefined || init === null) return;
    if (typeof init !== "object" && typeof init !== "function") {
      throw new TypeError(
        `Headers: init must be an object or a list of pairs, got ${describe(init)}`,
      );
    }
    if (init instanceof Headers) {
      this.#list = init.#list.map(([name, value]) => [name, value]);
    } else if (typeof (init as Iterable<unknown>)[Symbol.iterator] === "function") {
      for (const pair of init as Iterable<Iterable<string>>) {
        const items = typeof pair === "string" ? [] : [...pair];
        if (items.length !== 2) {
          throw new TypeError(
            `Headers: each header pair must have a name and a value, got ${describe(pair)}`,
          );
        }
        this.append(items[0] as string, items[1] as string);
      }
    } else {
      for (const name of Object.keys(init))
        this.append(name, (init as Record<string, string>)[name] as string);
    }
  }

  #writable(): void {
    if (this.#guard === "immutable") throw new TypeError("Headers: these headers are immutable");
  }
  append(name: string, value: string): void {
    this.#writable();
    this.#list.push([headerName(name), headerValue(value)]);
  }
  set(name: string, value: string): void {
    this.#writable();
    const key = headerName(name);
    const text = headerValue(value);
    const first = this.#list.findIndex(([entry]) => entry === key);
    if (first === -1) {
      this.#list.push([key, text]);
      return;
    }
    this.#list = this.#list.filter(([entry], index) => entry !== key || index === first);
    this.#list[first] = [key, text];
  }
  delete(name: string): void {
    this.#writable();
    const key = headerName(name);
    this.#list = this.#list.filter(([entry]) => entry !== key);
  }
  get(name: string): string | null {
    const key = headerName(name);
    const values = this.#list.filter(([entry]) => entry === key).map(([, value]) => value);
    return values.length ? values.join(", ") : null;
  }
  getSetCookie(): string[] {
    return this.#list.filter(([entry]) => entry === "set-cookie").map(([, value]) => value);
  }
  has(name: string): boolean {
    const key = headerName(name);
    return this.#list.some(([entry]) => entry === key);
  }
  /** Sorted by name, values of one name combined, Set-Cookie kept apart: as the spec iterates. */
  *entries(): IterableIterator<[string, string]> {
    const names = [...new Set(this.#list.map(([name]) => name))].sort();
    for (const name of names) {
      if (name === "set-cookie") {
        for (const value of this.getSetCookie()) yield [name, value];
      } else {
        yield [name, this.get(name) as string];
      }
    }
  }
  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }
  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }
  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown) {
    for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this);
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  get [Symbol.toStringTag](): string {
    return "Headers";
  }
}

// ---- Bodies -----------------------------------------------------------------------------------

interface BodyState {
  bytes: Uint8Array | null;
  used: boolean;
  stream: BodyStream | null;
}

/**
 * `response.body`: a small ReadableStream look-alike over bytes already in memory. It supports
 * getReader() (read, cancel, releaseLock, closed) and `for await`; it is no global ReadableStream.
 */
let streamBodyState: (stream: BodyStream) => BodyState;

class BodyStream {
  #state: BodyState;
  #locked = false;

  static {
    streamBodyState = (stream) => stream.#state;
  }

  constructor(key: unknown, state: BodyState) {
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    this.#state = state;
  }
  get locked(): boolean {
    return this.#locked;
  }
  getReader(): {
    read(): Promise<{ value: Uint8Array | undefined; done: boolean }>;
    cancel(): Promise<void>;
    releaseLock(): void;
    readonly closed: Promise<void>;
  } {
    if (this.#locked)
      throw new TypeError("ReadableStream: the stream is already locked to a reader");
    this.#locked = true;
    const state = this.#state;
    return {
      read: () => {
        if (state.used) return Promise.resolve({ value: undefined, done: true });
        state.used = true;
        const bytes = state.bytes ?? new Uint8Array(0);
        return Promise.resolve(
          bytes.length ? { value: bytes.slice(), done: false } : { value: undefined, done: true },
        );
      },
      cancel: () => {
        state.used = true;
        return Promise.resolve();
      },
      releaseLock: () => {
        this.#locked = false;
      },
      closed: Promise.resolve(),
    };
  }
  cancel(): Promise<void> {
    if (this.#locked) return Promise.reject(new TypeError("ReadableStream: the stream is locked"));
    this.#state.used = true;
    return Promise.resolve();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    const reader = this.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        yield value as Uint8Array;
      }
    } finally {
      reader.releaseLock();
    }
  }
  get [Symbol.toStringTag](): string {
    return "ReadableStream";
  }
}

/** The bytes and Content-Type of a body init value, as the spec's "extract a body". */
function extractBody(body: unknown): { bytes: Uint8Array; type: string | null } {
  if (typeof body === "string") return { bytes: encode(body), type: "text/plain;charset=UTF-8" };
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body))
    return { bytes: copyBytes(body), type: null };
  if (isUrlSearchParams(body)) {
    return {
      bytes: encode(body.toString()),
      type: "application/x-www-form-urlencoded;charset=UTF-8",
    };
  }
  if (body instanceof FormData) return encodeMultipart(body);
  if (body instanceof Blob) return { bytes: blobBytes(body), type: body.type || null };
  if (body instanceof BodyStream) {
    const state = streamBodyState(body);
    if (state.used || body.locked)
      throw new TypeError("Body: the stream has already been read or locked");
    state.used = true;
    return { bytes: state.bytes ?? new Uint8Array(0), type: null };
  }
  return { bytes: encode(String(body)), type: "text/plain;charset=UTF-8" };
}

let bodyStateOf: (body: Body) => BodyState;
let setBodyBytes: (body: Body, bytes: Uint8Array | null) => void;

abstract class Body {
  #state: BodyState = { bytes: null, used: false, stream: null };

  static {
    bodyStateOf = (body) => body.#state;
    setBodyBytes = (body, bytes) => {
      body.#state = { bytes, used: false, stream: null };
    };
  }

  protected abstract get bodyHeaders(): Headers;
  protected abstract get kind(): string;

  get body(): BodyStream | null {
    const state = this.#state;
    if (state.bytes === null) return null;
    state.stream ??= new BodyStream(INTERNAL, state);
    return state.stream;
  }
  get bodyUsed(): boolean {
    return this.#state.used;
  }

  #consume(method: string): Promise<Uint8Array> {
    const state = this.#state;
    if (state.used || state.stream?.locked) {
      return Promise.reject(
        new TypeError(`${this.kind}.${method}: Body is unusable: Body has already been read`),
      );
    }
    if (state.bytes !== null) state.used = true;
    return Promise.resolve(state.bytes ?? new Uint8Array(0));
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return this.#consume("arrayBuffer").then((bytes) => bytes.slice().buffer);
  }
  bytes(): Promise<Uint8Array> {
    return this.#consume("bytes").then((bytes) => bytes.slice());
  }
  text(): Promise<string> {
    return this.#consume("text").then(decode);
  }
  json(): Promise<unknown> {
    return this.#consume("json").then((bytes) => JSON.parse(decode(bytes)));
  }
  blob(): Promise<Blob> {
    return this.#consume("blob").then(
      (bytes) => new Blob([bytes], { type: this.bodyHeaders.get("content-type") ?? "" }),
    );
  }
  formData(): Promise<FormData> {
    const type = this.bodyHeaders.get("content-type") ?? "";
    return this.#consume("formData").then((bytes) => {
      const essence = type.split(";")[0]?.trim().toLowerCase();
      if (essence === "multipart/form-data") {
        const boundary = /;\s*boundary=("?)([^";]+)\1/i.exec(type)?.[2];
        if (!boundary)
          throw new TypeError(`${this.kind}.formData: the Content-Type has no boundary`);
        return decodeMultipart(bytes, boundary);
      }
      if (essence === "application/x-www-form-urlencoded") {
        const form = new FormData();
        for (const [name, value] of new (ctx.load("url").URLSearchParams)(decode(bytes))) {
          form.append(name, value);
        }
        return form;
      }
      throw new TypeError(
        `${this.kind}.formData: cannot parse a body of type ${JSON.stringify(type)} (expected multipart/form-data or application/x-www-form-urlencoded)`,
      );
    });
  }
}

// ---- Request ----------------------------------------------------------------------------------

interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: unknown;
  redirect?: string;
  signal?: AbortSignal | null;
  [key: string]: unknown;
}

class Request extends Body {
  #method: string;
  #url: string;
  #headers: Headers;
  #redirect: "follow" | "error" | "manual";
  #signal: AbortSignal;

  constructor(input: string | URL | Request, init: RequestInit = {}) {
    super();
    // biome-ignore lint/complexity/noArguments: a missing argument differs from undefined here
    if (arguments.length < 1)
      throw new TypeError("Request: 1 argument required, but only 0 present");
    if (init === null || (typeof init !== "object" && typeof init !== "function")) {
      if (init !== undefined)
        throw new TypeError(`Request: init must be an object, got ${describe(init)}`);
      init = {};
    }
    const source = input instanceof Request ? input : null;
    if (source) {
      this.#url = source.#url;
    } else {
      let url: URL;
      try {
        url = parseUrl(String(input));
      } catch (error) {
        throw new TypeError(`Failed to parse URL from ${String(input)}`, { cause: error });
      }
      if (url.username || url.password) {
        throw new TypeError(
          `Request cannot be constructed from a URL that includes credentials: ${String(input)}`,
        );
      }
      this.#url = url.href;
    }

    let method = source ? source.method : "GET";
    if (init.method !== undefined) {
      method = String(init.method);
      if (!TOKEN.test(method))
        throw new TypeError(`Request: ${JSON.stringify(method)} is not a valid HTTP method`);
      const upper = method.toUpperCase();
      if (FORBIDDEN_METHODS.has(upper))
        throw new TypeError(`Request: method ${JSON.stringify(method)} is not allowed`);
      if (NORMALISED_METHODS.has(upper)) method = upper;
    }
    this.#method = method;

    const redirect = init.redirect ?? (source ? source.redirect : "follow");
    if (!REDIRECT_MODES.has(redirect)) {
      throw new TypeError(
        `Request: redirect must be "follow", "error" or "manual", got ${describe(redirect)}`,
      );
    }
    this.#redirect = redirect as "follow" | "error" | "manual";

    const parentSignal = init.signal !== undefined ? init.signal : source?.signal;
    if (
      parentSignal !== undefined &&
      parentSignal !== null &&
      !(parentSignal instanceof AbortSignal)
    ) {
      throw new TypeError(`Request: signal must be an AbortSignal, got ${describe(parentSignal)}`);
    }
    this.#signal = parentSignal ? AbortSignal.any([parentSignal]) : newSignal();

    this.#headers = new Headers(init.headers ?? (source ? source.#headers : undefined));
    setGuard(this.#headers, "request");

    const hasBody = init.body !== undefined && init.body !== null;
    if (
      hasBody ||
      (source !== null && bodyStateOf(source).bytes !== null && init.body === undefined)
    ) {
      if (method === "GET" || method === "HEAD") {
        throw new TypeError(`Request with ${method} method cannot have body`);
      }
    }
    if (hasBody) {
      const { bytes, type } = extractBody(init.body);
      setBodyBytes(this, bytes);
      if (type !== null && !this.#headers.has("content-type"))
        this.#headers.set("content-type", type);
    } else if (source && init.body === undefined && bodyStateOf(source).bytes !== null) {
      if (source.bodyUsed)
        throw new TypeError("Request: the input request's body has already been read");
      setBodyBytes(this, bodyStateOf(source).bytes);
      // The body moves to the new request, as the spec's "transfer" does.
      bodyStateOf(source).used = true;
    }
  }

  protected get bodyHeaders(): Headers {
    return this.#headers;
  }
  protected get kind(): string {
    return "Request";
  }
  get method(): string {
    return this.#method;
  }
  get url(): string {
    return this.#url;
  }
  get headers(): Headers {
    return this.#headers;
  }
  get redirect(): string {
    return this.#redirect;
  }
  get signal(): AbortSignal {
    return this.#signal;
  }
  get cache(): string {
    return "default";
  }
  get credentials(): string {
    return "same-origin";
  }
  get mode(): string {
    return "cors";
  }
  get destination(): string {
    return "";
  }
  get referrer(): string {
    return "about:client";
  }
  get referrerPolicy(): string {
    return "";
  }
  get integrity(): string {
    return "";
  }
  get keepalive(): boolean {
    return false;
  }
  get duplex(): string {
    return "half";
  }
  clone(): Request {
    if (this.bodyUsed) throw new TypeError("Request.clone: Body has already been consumed");
    const copy = new Request(this.#url, {
      method: this.#method,
      headers: this.#headers,
      redirect: this.#redirect,
      signal: this.#signal,
    });
    setBodyBytes(copy, bodyStateOf(this).bytes);
    return copy;
  }
  get [Symbol.toStringTag](): string {
    return "Request";
  }
}

/** The request's body bytes for the bridge; marks the body used, as sending it does. */
function requestBytes(request: Request): Uint8Array | null {
  const state = bodyStateOf(request);
  if (state.used) throw new TypeError("fetch: the request's body has already been read");
  if (state.bytes !== null) state.used = true;
  return state.bytes;
}

// ---- Response ---------------------------------------------------------------------------------

interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

interface ResponseMeta {
  status: number;
  statusText: string;
  url: string;
  redirected: boolean;
  headers: [string, string][];
}

let makeResponse: (meta: ResponseMeta, body: Uint8Array | null, type: string) => Response;

class Response extends Body {
  #status = 200;
  #statusText = "";
  #headers: Headers;
  #type = "default";
  #url = "";
  #redirected = false;

  static {
    makeResponse = (meta, body, type) => {
      const response = new Response(null, { headers: meta.headers });
      response.#status = meta.status;
      response.#statusText = meta.statusText;
      response.#url = meta.url;
      response.#redirected = meta.redirected;
      response.#type = type;
      setGuard(response.#headers, "immutable");
      setBodyBytes(response, body);
      return response;
    };
  }

  constructor(body: unknown = null, init: ResponseInit = {}) {
    super();
    if (init === null || typeof init !== "object") {
      if (init !== undefined)
        throw new TypeError(`Response: init must be an object, got ${describe(init)}`);
      init = {};
    }
    if (init.status !== undefined) {
      const status = Number(init.status);
      if (!(Number.isInteger(status) && status >= 200 && status <= 599)) {
        throw new RangeError(
          `Response: init.status must be in the range of 200 to 599, inclusive, got ${describe(init.status)}`,
        );
      }
      this.#status = status;
    }
    if (init.statusText !== undefined) {
      const text = String(init.statusText);
      if (/[\r\n]/.test(text))
        throw new TypeError(`Response: invalid statusText ${JSON.stringify(text)}`);
      this.#statusText = text;
    }
    this.#headers = new Headers(init.headers);
    setGuard(this.#headers, "response");
    if (body !== null && body !== undefined) {
      if (NULL_BODY_STATUSES.has(this.#status)) {
        throw new TypeError(`Response with null body status ${this.#status} cannot have body`);
      }
      const { bytes, type } = extractBody(body);
      setBodyBytes(this, bytes);
      if (type !== null && !this.#headers.has("content-type"))
        this.#headers.set("content-type", type);
    }
  }

  static error(): Response {
    const response = makeResponse(
      { status: 0, statusText: "", url: "", redirected: false, headers: [] },
      null,
      "error",
    );
    return response;
  }

  static redirect(url: string | URL, status = 302): Response {
    let location: string;
    try {
      location = parseUrl(String(url)).href;
    } catch (error) {
      throw new TypeError(`Response.redirect: failed to parse URL from ${String(url)}`, {
        cause: error,
      });
    }
    if (!REDIRECT_STATUSES.has(Number(status))) {
      throw new RangeError(
        `Response.redirect: invalid status ${describe(status)} (expected 301, 302, 303, 307 or 308)`,
      );
    }
    return makeResponse(
      {
        status: Number(status),
        statusText: "",
        url: "",
        redirected: false,
        headers: [["location", location]],
      },
      null,
      "default",
    );
  }

  static json(data: unknown, init: ResponseInit = {}): Response {
    const text = JSON.stringify(data);
    if (text === undefined)
      throw new TypeError(`Response.json: ${describe(data)} is not JSON serializable`);
    const response = new Response(text, init);
    response.#headers.set("content-type", "application/json");
    return response;
  }

  protected get bodyHeaders(): Headers {
    return this.#headers;
  }
  protected get kind(): string {
    return "Response";
  }
  get type(): string {
    return this.#type;
  }
  get url(): string {
    return this.#url;
  }
  get redirected(): boolean {
    return this.#redirected;
  }
  get status(): number {
    return this.#status;
  }
  get ok(): boolean {
    return this.#status >= 200 && this.#status <= 299;
  }
  get statusText(): string {
    return this.#statusText;
  }
  get headers(): Headers {
    return this.#headers;
  }
  clone(): Response {
    if (this.bodyUsed) throw new TypeError("Response.clone: Body has already been consumed");
    const copy = makeResponse(
      {
        status: this.#status,
        statusText: this.#statusText,
        url: this.#url,
        redirected: this.#redirected,
        headers: [...headerList(this.#headers)],
      },
      bodyStateOf(this).bytes,
      this.#type,
    );
    setGuard(
      copy.#headers,
      this.#type === "error" || this.#type === "basic" ? "immutable" : "response",
    );
    return copy;
  }
  get [Symbol.toStringTag](): string {
    return "Response";
  }
}

// ---- fetch ------------------------------------------------------------------------------------

function fetchFailed(error: unknown): TypeError {
  const message = error instanceof Error ? error.message : String(error);
  const failure = new TypeError(`fetch failed: ${message}`, { cause: error });
  // The host marks refusals by policy; uncaught, they end the task as permission_denied.
  if (
    typeof error === "object" &&
    error !== null &&
    (error as { denied?: unknown }).denied === true
  ) {
    Object.defineProperty(failure, Symbol.for("capsule.denied"), { value: true });
  }
  return failure;
}

function fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    let request: Request;
    let body: Uint8Array | null;
    try {
      request = new Request(input, init);
      body = requestBytes(request);
    } catch (error) {
      reject(error);
      return;
    }
    const { signal } = request;
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const id = ++lastFetchId;
    const url = request.url.replace(/#.*$/s, "");
    let settled = false;
    const removeAbort = onAbort(signal, () => {
      if (settled) return;
      settled = true;
      ctx.host.abortFetch(id);
      reject(signal.reason);
    });
    const requestJson = JSON.stringify({
      id,
      method: request.method,
      url,
      headers: headerList(request.headers),
      redirect: request.redirect,
    });
    const onFailure = (error: unknown) => {
      if (settled) return;
      settled = true;
      removeAbort();
      reject(fetchFailed(error));
    };
    let pending: Promise<{ meta: string; body: ArrayBuffer }>;
    try {
      pending =
        body === null
          ? ctx.host.fetch(requestJson)
          : ctx.host.fetch(requestJson, body.slice().buffer);
    } catch (error) {
      onFailure(error);
      return;
    }
    pending.then((result) => {
      if (settled) return;
      settled = true;
      removeAbort();
      try {
        const meta = JSON.parse(result.meta) as ResponseMeta;
        const bytes = new Uint8Array(result.body);
        const nullBody = request.method === "HEAD" || NULL_BODY_STATUSES.has(meta.status);
        resolve(makeResponse(meta, nullBody ? null : bytes, "basic"));
      } catch (error) {
        reject(fetchFailed(error));
      }
    }, onFailure);
  });
}

export interface FetchExports {
  fetch: typeof fetch;
  Request: typeof Request;
  Response: typeof Response;
  Headers: typeof Headers;
  FormData: typeof FormData;
  Blob: typeof Blob;
  File: typeof File;
  AbortController: typeof AbortController;
  AbortSignal: typeof AbortSignal;
  Event: typeof Event;
  EventTarget: typeof EventTarget;
}

const install: ChunkInstaller<FetchExports> = (context) => {
  ctx = context;
  return {
    fetch,
    Request,
    Response,
    Headers,
    FormData,
    Blob,
    File,
    AbortController,
    AbortSignal,
    Event,
    EventTarget,
  };
};
export default install;
