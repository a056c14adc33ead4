import { CompileError, TaskError } from "../errors.ts";

/**
 * What a Capsule component says back, in the host's terms: the header that tells a component from
 * a core module, and the JSON its `task-runner.run` export answers.
 */

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];
/** Version and layer fields of a component (layer 1) and of a core module (layer 0, version 1). */
const COMPONENT_VERSION = [0x0d, 0x00, 0x01, 0x00];
const MODULE_VERSION = [0x01, 0x00, 0x00, 0x00];

function startsWith(bytes: Uint8Array, at: number, expected: readonly number[]): boolean {
  return expected.every((byte, i) => bytes[at + i] === byte);
}

/** Throws a CompileError naming `name` unless `bytes` start like a WebAssembly component. */
export function checkComponentHeader(bytes: Uint8Array, name: string): void {
  if (bytes.byteLength < 8 || !startsWith(bytes, 0, WASM_MAGIC)) {
    throw new CompileError(`${name} is not a WebAssembly file (no \\0asm header)`);
  }
  if (startsWith(bytes, 4, MODULE_VERSION)) {
    throw new CompileError(
      `${name} is a core WebAssembly module, not a component; build the task with \`capsule build --export\` to get a component`,
    );
  }
  if (!startsWith(bytes, 4, COMPONENT_VERSION)) {
    const version = Array.from(bytes.subarray(4, 8), (b) => b.toString(16).padStart(2, "0")).join(
      " ",
    );
    throw new CompileError(
      `${name} is a WebAssembly binary of an unknown version or layer (${version})`,
    );
  }
}

/** The run export's answer: `{"result": ...}`, or `{"error_type", "message"}` for a failed task. */
export function parseRunAnswer(answer: unknown): unknown {
  if (typeof answer !== "string") {
    throw new TaskError(`the component's run export answered ${typeof answer}, not a JSON string`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer);
  } catch {
    throw new TaskError(
      `the component's run export answered text that is not JSON: ${answer.slice(0, 200)}`,
    );
  }
  if (parsed === null || typeof parsed !== "object") {
    throw new TaskError(
      `the component's run export answered ${answer.slice(0, 200)}, not an object`,
    );
  }
  const record = parsed as Record<string, unknown>;
  if ("result" in record) return record.result;
  const message = typeof record.message === "string" ? record.message : answer.slice(0, 500);
  throw new TaskError(message);
}
