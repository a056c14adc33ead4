// What "the host is unharmed" means on every host, as checks the host runners share.
import type { Envelope } from "../../core/runtime/envelope.ts";

/** A file beside every project, which no case may read, change or remove. */
export const OUTSIDE_FILE = "secret.txt";
export const OUTSIDE_TEXT = "the host's own secret";

export const HELLO = `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main" }, () => "still here");`;

/** A fresh task still runs after the hostile ones. */
export function checkHello(envelope: Envelope): void {
  if (!envelope.success || envelope.result !== "still here") {
    throw new Error(`a fresh task no longer runs: ${JSON.stringify(envelope)}`);
  }
}

/** No value that crossed the bridge added keys to the host's built-in prototypes. */
export function checkPrototypes(realm: typeof globalThis): void {
  for (const [name, proto] of [
    ["Object", realm.Object.prototype],
    ["Array", realm.Array.prototype],
    ["Function", realm.Function.prototype],
    ["String", realm.String.prototype],
    ["Promise", realm.Promise.prototype],
  ] as const) {
    const extra = Object.getOwnPropertyNames(proto).filter((key) => key.includes("pollut"));
    if (extra.length > 0 || "polluted" in realm.Object.prototype) {
      throw new Error(`${name}.prototype was polluted: ${extra.join(", ")}`);
    }
  }
}
