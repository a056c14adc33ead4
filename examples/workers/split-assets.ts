/**
 * Cloudflare stores no static asset over 25 MiB, and the playground's Python snapshot is about
 * 30 MB. Its build (playground/vite.config.ts) uploads such a file as parts of at most 20 MiB
 * with a manifest beside them (`<file>.parts.json`), and this Worker serves the parts joined,
 * at the file's own address, so the page loads the file as from any other host.
 */

/** The Workers static-assets binding (`"assets": { "binding": "ASSETS" }`). */
export interface AssetsBinding {
  fetch(input: Request | URL | string, init?: RequestInit): Promise<Response>;
}

export interface SplitManifest {
  /** The parts' file names, in order, beside the manifest. */
  parts: string[];
  /** The joined file's size in bytes. */
  size: number;
  /** The joined file's SHA-256, hex: its ETag. */
  sha256: string;
}

export const SPLIT_MANIFEST_SUFFIX = ".parts.json";
const REVALIDATE = "public, max-age=0, must-revalidate";
const PART_NAME = /^[A-Za-z0-9._-]+\.part\d+$/;

/**
 * The joined file when `request` asks for one the build split (GET or HEAD), else null. A
 * manifest that is not the build's shape is an error, not a file: nothing but a name of the form
 * `<name>.part<n>` beside the manifest is ever fetched.
 */
export async function serveSplitAsset(
  request: Request,
  assets: AssetsBinding,
  waitUntil: (promise: Promise<unknown>) => void = () => {},
): Promise<Response | null> {
  if (request.method !== "GET" && request.method !== "HEAD") return null;
  const url = new URL(request.url);
  if (url.pathname.endsWith("/")) return null;
  const found = await assets.fetch(new URL(`${url.pathname}${SPLIT_MANIFEST_SUFFIX}`, url.origin));
  if (!found.ok) {
    await found.body?.cancel();
    return null;
  }
  const manifest = checkManifest(await found.json(), url.pathname);
  const etag = `"${manifest.sha256}"`;
  const headers = { etag, "cache-control": REVALIDATE };
  if (request.headers.get("if-none-match") === etag) {
    return new Response(null, { status: 304, headers });
  }
  const fileHeaders = {
    ...headers,
    "content-type": "application/octet-stream",
    "content-length": String(manifest.size),
  };
  if (request.method === "HEAD") return new Response(null, { headers: fileHeaders });
  const directory = new URL(".", url);
  // workerd's FixedLengthStream sends Content-Length; a plain TransformStream is sent chunked.
  const Fixed = (globalThis as { FixedLengthStream?: new (length: number) => TransformStream })
    .FixedLengthStream;
  const { readable, writable } =
    Fixed === undefined ? new TransformStream<Uint8Array, Uint8Array>() : new Fixed(manifest.size);
  const pump = (async () => {
    for (const part of manifest.parts) {
      const response = await assets.fetch(new URL(part, directory));
      if (!response.ok || response.body === null) {
        throw new Error(`${url.pathname}: its part ${part} answered HTTP ${response.status}`);
      }
      await response.body.pipeTo(writable, { preventClose: true });
    }
    await writable.close();
  })().catch((error: unknown) => writable.abort(error));
  waitUntil(pump);
  return new Response(readable, { headers: fileHeaders });
}

function checkManifest(value: unknown, path: string): SplitManifest {
  const manifest = value as Partial<SplitManifest> | null;
  const valid =
    typeof manifest === "object" &&
    manifest !== null &&
    Array.isArray(manifest.parts) &&
    manifest.parts.length > 0 &&
    manifest.parts.every((part) => typeof part === "string" && PART_NAME.test(part)) &&
    Number.isSafeInteger(manifest.size) &&
    (manifest.size ?? -1) >= 0 &&
    typeof manifest.sha256 === "string" &&
    /^[0-9a-f]{64}$/.test(manifest.sha256);
  if (!valid) throw new Error(`${path}${SPLIT_MANIFEST_SUFFIX} is not a manifest of parts`);
  return manifest as SplitManifest;
}
