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

/**
 * The own keys of the built-in prototypes, as one text: taken before the cases and again after,
 * so any key a value crossing the bridge added shows up, whatever it is called. A string, so a
 * page can run the same function (`page.evaluate(prototypeKeys)`).
 */
export function prototypeKeys(): string {
  return [Object, Array, Function, String, Promise, Error]
    .map((type) => `${type.name}: ${Reflect.ownKeys(type.prototype).map(String).sort().join(",")}`)
    .join("\n");
}

export function checkPrototypes(before: string, after: string): void {
  if (after !== before) {
    throw new Error(`the host's built-in prototypes changed:\nbefore\n${before}\nafter\n${after}`);
  }
}
