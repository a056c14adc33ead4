import type { QuickJSContext, QuickJSHandle } from "quickjs-emscripten-core";

/** The parts of a context `getString` uses, which it does not expose (quickjs-emscripten 0.32). */
interface ContextInternals {
  ffi: {
    QTS_GetString(ctx: number, value: number): number;
    QTS_FreeCString(ctx: number, pointer: number): void;
  };
  module: { HEAPU8: Uint8Array };
  ctx: { value: number };
}

/**
 * A guest string, whole. `getString` reads the engine's C string up to its first NUL, so a
 * console line "a\0b" reached the host as "a", and it turns a lone surrogate into replacement
 * characters. The string's own length (read without running guest code: a primitive's `length`
 * never reaches a prototype) tells when either happened; then the engine's copy is decoded here,
 * NULs and lone surrogates included, until that length is reached.
 */
export function wholeString(
  context: QuickJSContext,
  handle: QuickJSHandle,
  text = context.getString(handle),
): string {
  const lengthHandle = context.getProp(handle, "length");
  const length = context.getNumber(lengthHandle);
  lengthHandle.dispose();
  if (text.length === length && !text.includes("\uFFFD")) return text;
  const { ffi, module, ctx } = context as unknown as ContextInternals;
  const pointer = ffi.QTS_GetString(ctx.value, (handle as unknown as { value: number }).value);
  try {
    return decodeEngineText(module.HEAPU8, pointer, length);
  } finally {
    ffi.QTS_FreeCString(ctx.value, pointer);
  }
}

/**
 * Decodes `length` UTF-16 units from the engine's UTF-8 at `at`: a 0 byte is a NUL character, and
 * a lone surrogate comes as its own 3 bytes. Never reads past 3 bytes per unit, the most a unit
 * takes.
 */
function decodeEngineText(heap: Uint8Array, at: number, length: number): string {
  const units: number[] = [];
  const end = Math.min(heap.length, at + 3 * length);
  const next = () => (at < end ? (heap[at++] as number) & 0x3f : 0);
  while (units.length < length && at < end) {
    const lead = heap[at++] as number;
    if (lead < 0x80) units.push(lead);
    else if (lead < 0xe0) units.push(((lead & 0x1f) << 6) | next());
    else if (lead < 0xf0) units.push(((lead & 0x0f) << 12) | (next() << 6) | next());
    else {
      const point = (((lead & 0x07) << 18) | (next() << 12) | (next() << 6) | next()) - 0x10000;
      units.push(0xd800 + (point >> 10), 0xdc00 + (point & 0x3ff));
    }
  }
  let whole = "";
  for (let i = 0; i < units.length; i += 8192) {
    whole += String.fromCharCode(...units.slice(i, i + 8192));
  }
  return whole.slice(0, length);
}
