import type { ChunkInstaller } from "../chunk.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export interface Base64Exports {
  atob(data: string): string;
  btoa(data: string): string;
}

/** atob/btoa as the HTML standard defines them (forgiving-base64), with browser errors. */
const install: ChunkInstaller<Base64Exports> = (ctx) => {
  const invalidCharacter = (message: string) =>
    new (ctx.load("dom-exception").DOMException)(message, "InvalidCharacterError");

  function requireArgument(name: string, count: number): void {
    if (count < 1) {
      throw new TypeError(`Failed to execute '${name}': 1 argument required, but only 0 present.`);
    }
  }

  return {
    btoa(data: string): string {
      // biome-ignore lint/complexity/noArguments: a missing argument must differ from undefined, and the function keeps length 1 as on the web platform
      requireArgument("btoa", arguments.length);
      const text = String(data);
      let out = "";
      for (let i = 0; i < text.length; i += 3) {
        const a = text.charCodeAt(i);
        const b = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
        const c = i + 2 < text.length ? text.charCodeAt(i + 2) : 0;
        if (a > 255 || b > 255 || c > 255) {
          throw invalidCharacter(
            "Invalid character: the string contains characters outside of the Latin1 range.",
          );
        }
        const bits = (a << 16) | (b << 8) | c;
        out += ALPHABET.charAt(bits >> 18) + ALPHABET.charAt((bits >> 12) & 63);
        out += i + 1 < text.length ? ALPHABET[(bits >> 6) & 63] : "=";
        out += i + 2 < text.length ? ALPHABET[bits & 63] : "=";
      }
      return out;
    },

    atob(data: string): string {
      // biome-ignore lint/complexity/noArguments: a missing argument must differ from undefined, and the function keeps length 1 as on the web platform
      requireArgument("atob", arguments.length);
      let text = String(data).replace(/[\t\n\f\r ]/g, "");
      if (text.length % 4 === 0) text = text.replace(/==?$/, "");
      if (text.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(text)) {
        throw invalidCharacter("The string to be decoded is not correctly encoded.");
      }
      let out = "";
      let bits = 0;
      let count = 0;
      for (let i = 0; i < text.length; i++) {
        bits = (bits << 6) | ALPHABET.indexOf(text[i] as string);
        count += 6;
        if (count >= 8) {
          count -= 8;
          out += String.fromCharCode((bits >> count) & 255);
        }
      }
      return out;
    },
  };
};
export default install;
