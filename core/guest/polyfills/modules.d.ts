// The polyfill packages ship no types for the entry points used here.

declare module "@ungap/structured-clone" {
  export type SerializedRecord = [number, unknown][];
  export function serialize(value: unknown): SerializedRecord;
  export function deserialize(record: SerializedRecord): unknown;
}

declare module "core-js-pure/actual/url/index.js" {
  const URL: typeof globalThis.URL;
  export default URL;
}

declare module "core-js-pure/actual/url-search-params/index.js" {
  const URLSearchParams: typeof globalThis.URLSearchParams;
  export default URLSearchParams;
}
