import URL from "core-js-pure/actual/url/index.js";
import URLSearchParams from "core-js-pure/actual/url-search-params/index.js";
import type { ChunkInstaller } from "../chunk.ts";

export interface UrlExports {
  URL: typeof globalThis.URL;
  URLSearchParams: typeof globalThis.URLSearchParams;
}

const install: ChunkInstaller<UrlExports> = () => ({ URL, URLSearchParams });
export default install;
