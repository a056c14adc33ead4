/**
 * The emscripten glue passes host facts into the guest: the program name and `LANG` through the
 * environment, the host's time zone through `localtime`/`tzset`, and the wall clock. Any of them
 * changes `Date` results and the fuel a task spends, so every host gets the same pinned values.
 *
 * The import names are the minified ones of @jitl/quickjs-wasmfile-release-sync 0.32.0; the
 * engine test checks them against the module, so a version bump fails loudly.
 */

type ImportObject = Record<string, Record<string, unknown>>;

export const PINNED_IMPORT_NAMES = {
  localtime: "m",
  tzset: "n",
  dateNow: "p",
  environGet: "e",
  environSizesGet: "f",
  /** emscripten_resize_heap: grows the memory and renews the glue's views of it. */
  resizeHeap: "k",
} as const;

/** The whole environment a guest's C library sees. */
const PINNED_ENVIRONMENT = ["LANG=C.UTF-8", "TZ=UTC", "_=capsule"];

export interface PinnedClock {
  /** Milliseconds since the epoch, as the runtime chooses to show the guest. */
  now(): number;
}

export function pinImports(imports: ImportObject, memory: WebAssembly.Memory, clock: PinnedClock) {
  const env = imports.a;
  if (env === undefined) throw new Error("engine imports: module 'a' missing");
  const encoder = new TextEncoder();
  const bytes = () => new Uint8Array(memory.buffer);
  const view = () => new DataView(memory.buffer);
  const writeCString = (ptr: number, text: string) => {
    const encoded = encoder.encode(text);
    bytes().set(encoded, ptr);
    bytes()[ptr + encoded.length] = 0;
    return encoded.length + 1;
  };

  env[PINNED_IMPORT_NAMES.dateNow] = () => clock.now();

  env[PINNED_IMPORT_NAMES.localtime] = (time: number | bigint, tmPtr: number) => {
    const date = new Date(Number(time) * 1000);
    const dv = view();
    const fields = [
      date.getUTCSeconds(),
      date.getUTCMinutes(),
      date.getUTCHours(),
      date.getUTCDate(),
      date.getUTCMonth(),
      date.getUTCFullYear() - 1900,
      date.getUTCDay(),
      dayOfYear(date),
      0, // tm_isdst
      0, // tm_gmtoff
    ];
    for (const [i, value] of fields.entries()) dv.setInt32(tmPtr + i * 4, value, true);
  };

  env[PINNED_IMPORT_NAMES.tzset] = (
    timezonePtr: number,
    daylightPtr: number,
    stdNamePtr: number,
    dstNamePtr: number,
  ) => {
    const dv = view();
    dv.setUint32(timezonePtr, 0, true);
    dv.setInt32(daylightPtr, 0, true);
    writeCString(stdNamePtr, "UTC");
    writeCString(dstNamePtr, "UTC");
  };

  env[PINNED_IMPORT_NAMES.environSizesGet] = (countPtr: number, sizePtr: number) => {
    const dv = view();
    dv.setUint32(countPtr, PINNED_ENVIRONMENT.length, true);
    const total = PINNED_ENVIRONMENT.reduce((sum, s) => sum + encoder.encode(s).length + 1, 0);
    dv.setUint32(sizePtr, total, true);
    return 0;
  };

  env[PINNED_IMPORT_NAMES.environGet] = (environPtr: number, bufferPtr: number) => {
    let offset = 0;
    PINNED_ENVIRONMENT.forEach((entry, i) => {
      view().setUint32(environPtr + i * 4, bufferPtr + offset, true);
      offset += writeCString(bufferPtr + offset, entry);
    });
    return 0;
  };
}

function dayOfYear(date: Date): number {
  const start = Date.UTC(date.getUTCFullYear(), 0, 1);
  return Math.floor((date.getTime() - start) / 86_400_000);
}
