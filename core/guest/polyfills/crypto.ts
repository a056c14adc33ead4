import type { ChunkInstaller } from "../chunk.ts";

const MAX_RANDOM_BYTES = 65536;

type IntegerTypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

const INTEGER_ARRAY_TAGS = new Set([
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "BigInt64Array",
  "BigUint64Array",
]);

// %TypedArray%.prototype[@@toStringTag] reads the internal slot, so look-alikes cannot pass.
const typedArrayTag = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)?.get as (this: unknown) => string | undefined;

export interface CryptoExports {
  crypto: {
    getRandomValues<T extends IntegerTypedArray>(array: T): T;
    randomUUID(): string;
  };
}

const install: ChunkInstaller<CryptoExports> = (ctx) => {
  const { randomBytes } = ctx.host;
  const domException = (message: string, name: string) =>
    new (ctx.load("dom-exception").DOMException)(message, name);

  class Crypto {
    getRandomValues<T extends IntegerTypedArray>(array: T): T {
      // biome-ignore lint/complexity/noArguments: a missing argument must differ from undefined, and the function keeps length 1 as on the web platform
      if (arguments.length < 1) {
        throw new TypeError(
          "Failed to execute 'getRandomValues': 1 argument required, but only 0 present.",
        );
      }
      const tag = typedArrayTag.call(array);
      if (tag === undefined || !INTEGER_ARRAY_TAGS.has(tag)) {
        throw domException(
          `The data argument must be an integer-type TypedArray (Int8Array ... BigUint64Array), got ${tag ?? typeof array}`,
          "TypeMismatchError",
        );
      }
      if (array.byteLength > MAX_RANDOM_BYTES) {
        throw domException(
          `The ArrayBufferView's byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (${MAX_RANDOM_BYTES})`,
          "QuotaExceededError",
        );
      }
      if (array.byteLength > 0) {
        new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(
          new Uint8Array(randomBytes(array.byteLength)),
        );
      }
      return array;
    }

    randomUUID(): string {
      const bytes = new Uint8Array(randomBytes(16));
      bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
      bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
      let hex = "";
      for (const byte of bytes) hex += (byte + 256).toString(16).slice(1);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }

    get [Symbol.toStringTag](): string {
      return "Crypto";
    }
  }
  return { crypto: new Crypto() };
};
export default install;
