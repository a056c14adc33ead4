import { Buffer, INSPECT_MAX_BYTES, kMaxLength, SlowBuffer } from "buffer";
import type { ChunkInstaller } from "../chunk.ts";

/** The largest string length QuickJS allows (2^30 - 1 code units). */
const MAX_STRING_LENGTH = 0x3fffffff;

export type GuestBuffer = typeof Buffer;

export interface BufferModule {
  Buffer: GuestBuffer;
  SlowBuffer: typeof SlowBuffer;
  INSPECT_MAX_BYTES: number;
  kMaxLength: number;
  kStringMaxLength: number;
  constants: { MAX_LENGTH: number; MAX_STRING_LENGTH: number };
  atob(data: string): string;
  btoa(data: string): string;
}

export interface BufferExports {
  Buffer: GuestBuffer;
  module: BufferModule;
}

type Encoding = Parameters<InstanceType<typeof Buffer>["toString"]>[0];

const isBase64Url = (encoding: unknown) =>
  typeof encoding === "string" && encoding.toLowerCase() === "base64url";

/**
 * The package predates Node's "base64url". Its base64 decoder already accepts "-", "_" and missing
 * padding, so decoding maps onto base64; encoding rewrites base64's output.
 */
function addBase64Url(buffer: typeof Buffer): void {
  const proto = buffer.prototype;
  const { isEncoding, byteLength } = buffer;
  const from = buffer.from as (...args: unknown[]) => InstanceType<typeof Buffer>;
  type Method = (this: unknown, ...args: unknown[]) => unknown;
  const { toString: encode, write } = proto as unknown as { toString: Method; write: Method };
  const base64 = (encoding: unknown) => (isBase64Url(encoding) ? "base64" : encoding);
  buffer.isEncoding = ((encoding: string) =>
    isBase64Url(encoding) || isEncoding(encoding)) as typeof buffer.isEncoding;
  buffer.byteLength = ((value: string, encoding?: Encoding) =>
    byteLength(value, base64(encoding) as Encoding)) as typeof buffer.byteLength;
  buffer.from = ((value: unknown, encoding?: unknown, length?: unknown) =>
    typeof value === "string"
      ? from(value, base64(encoding))
      : from(value, encoding, length)) as typeof buffer.from;
  Object.defineProperty(proto, "toString", {
    value(this: Uint8Array, encoding?: unknown, start?: unknown, end?: unknown): string {
      if (!isBase64Url(encoding)) return encode.call(this, encoding, start, end) as string;
      const text = encode.call(this, "base64", start, end) as string;
      return text.replace(/[+/=]/g, (c) => (c === "+" ? "-" : c === "/" ? "_" : ""));
    },
    writable: true,
    configurable: true,
  });
  Object.defineProperty(proto, "write", {
    value(this: Uint8Array, value: unknown, ...rest: unknown[]): number {
      return write.call(this, value, ...rest.map(base64)) as number;
    },
    writable: true,
    configurable: true,
  });
}

/** Node's Buffer, from the pure-JS `buffer` package (a Uint8Array subclass). */
const install: ChunkInstaller<BufferExports> = (ctx) => {
  addBase64Url(Buffer);
  const { atob, btoa } = ctx.load("base64");
  const module: BufferModule = {
    Buffer,
    SlowBuffer,
    INSPECT_MAX_BYTES,
    kMaxLength,
    kStringMaxLength: MAX_STRING_LENGTH,
    constants: { MAX_LENGTH: kMaxLength, MAX_STRING_LENGTH },
    atob,
    btoa,
  };
  return { Buffer, module };
};
export default install;
