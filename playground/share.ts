/**
 * Code, args and the mode travel in the URL hash, deflated and base64url-encoded, so a link needs
 * no server. Environment values are never put in a link: they may be secrets.
 */
export interface SharedState {
  code: string;
  args: string[];
  /** The code's language; links made before Python was there carry none and mean TypeScript. */
  language: "ts" | "py";
  /** Which view the link opens: the task editor (links without one) or a session's cells. */
  mode: "task" | "session";
}

const PREFIX = "#code=";

export async function encodeState(state: SharedState): Promise<string> {
  const { code, args, language, mode } = state;
  // A task-mode link stays byte-for-byte what it was before session mode.
  const json = new TextEncoder().encode(
    JSON.stringify(mode === "session" ? { code, args, language, mode } : { code, args, language }),
  );
  const deflated = await transform(json, new CompressionStream("deflate-raw"));
  return PREFIX + toBase64Url(deflated);
}

/** The state a hash carries, or undefined when the hash is not one of ours or is damaged. */
export async function decodeState(hash: string): Promise<SharedState | undefined> {
  if (!hash.startsWith(PREFIX)) return undefined;
  try {
    const bytes = fromBase64Url(hash.slice(PREFIX.length));
    const inflated = await transform(bytes, new DecompressionStream("deflate-raw"));
    const parsed: unknown = JSON.parse(new TextDecoder().decode(inflated));
    if (typeof parsed !== "object" || parsed === null) return undefined;
    const { code, args, language, mode } = parsed as Record<string, unknown>;
    if (typeof code !== "string") return undefined;
    const argList = Array.isArray(args) ? args.filter((a) => typeof a === "string") : [];
    return {
      code,
      args: argList,
      language: language === "py" ? "py" : "ts",
      mode: mode === "session" ? "session" : "task",
    };
  } catch {
    return undefined;
  }
}

async function transform(
  bytes: Uint8Array,
  stream: CompressionStream | DecompressionStream,
): Promise<Uint8Array> {
  const output = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(output).arrayBuffer());
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): Uint8Array {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}
