import { TextDecoder, TextEncoder } from "@exodus/bytes/encoding-lite.js";
import type { ChunkInstaller } from "../chunk.ts";

export interface EncodingExports {
  TextEncoder: typeof TextEncoder;
  TextDecoder: typeof TextDecoder;
}

const install: ChunkInstaller<EncodingExports> = () => ({ TextEncoder, TextDecoder });
export default install;
