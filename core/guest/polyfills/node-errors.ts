/**
 * Argument errors shaped like Node's (`err.code` such as "ERR_INVALID_ARG_TYPE" and Node's
 * wording), shared by the Node-compatible chunks. Bundled into each chunk that uses it.
 */

export type CodedError = Error & { code: string };

function coded<E extends Error>(error: E, code: string): E & { code: string } {
  return Object.assign(error, { code });
}

/** Node's "Received ..." tail: the type and a short rendering of the value. */
export function describeReceived(value: unknown): string {
  if (value === null || value === undefined) return ` Received ${value}`;
  if (typeof value === "function") return ` Received function ${value.name || "<anonymous>"}`;
  if (typeof value === "object") {
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    return name ? ` Received an instance of ${name}` : " Received [object]";
  }
  let shown = typeof value === "string" ? `'${value}'` : String(value);
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  if (typeof value === "bigint") shown += "n";
  return ` Received type ${typeof value} (${shown})`;
}

export function invalidArgType(name: string, expected: string, value: unknown): CodedError {
  const what = name.includes(".") ? "property" : "argument";
  return coded(
    new TypeError(`The "${name}" ${what} must be ${expected}.${describeReceived(value)}`),
    "ERR_INVALID_ARG_TYPE",
  );
}

export function invalidArgValue(name: string, value: unknown, reason = "is invalid"): CodedError {
  const shown = typeof value === "string" ? `'${value}'` : String(value);
  return coded(
    new TypeError(`The argument '${name}' ${reason}. Received ${shown}`),
    "ERR_INVALID_ARG_VALUE",
  );
}

export function outOfRange(name: string, range: string, value: unknown): CodedError {
  return coded(
    new RangeError(
      `The value of "${name}" is out of range. It must be ${range}. Received ${value}`,
    ),
    "ERR_OUT_OF_RANGE",
  );
}

/** A Node API this sandbox does not provide: a clear error when it is called. */
export function notAvailable(name: string, hint: string): CodedError {
  return coded(
    new Error(`${name} is not available inside the sandbox; ${hint}`),
    "ERR_NOT_AVAILABLE",
  );
}

export function validateString(value: unknown, name: string): asserts value is string {
  if (typeof value !== "string") throw invalidArgType(name, "of type string", value);
}
