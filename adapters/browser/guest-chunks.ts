/**
 * Guest chunks a page fetches on first use instead of with the worker: the large ones that small
 * tasks never touch. The build writes each beside the worker script (guest/<name>.txt) and leaves
 * it out of the worker; worker.ts loads it when a task first needs it. The text, and so the fuel,
 * is the same either way.
 *
 * Each address is a literal `new URL("./guest/<name>.txt", import.meta.url)`: an app's bundler
 * (Vite, webpack, Parcel) sees it, emits the file and rewrites the address, and a page that loads
 * dist/browser as it is resolves it beside the worker. The files are text, not `.js`: the page
 * never runs them, and a dev server (Vite's) rewrites every `.js` file it serves as a module of
 * its own. scripts/build.mjs reads the names here.
 */
export const LAZY_GUEST_CHUNKS: Readonly<Record<string, URL>> = {
  url: new URL("./guest/url.txt", import.meta.url),
  buffer: new URL("./guest/buffer.txt", import.meta.url),
  encoding: new URL("./guest/encoding.txt", import.meta.url),
  fetch: new URL("./guest/fetch.txt", import.meta.url),
  fs: new URL("./guest/fs.txt", import.meta.url),
  path: new URL("./guest/path.txt", import.meta.url),
  process: new URL("./guest/process.txt", import.meta.url),
  "structured-clone": new URL("./guest/structured-clone.txt", import.meta.url),
};
