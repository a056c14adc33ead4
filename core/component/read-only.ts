/**
 * Grants for a component, kept by wrapping its `wasi:filesystem` descriptors. A read-only grant: its `wasi:filesystem` descriptor wrapped so that every change
 * is refused with WASI's `read-only` error (guest code sees EROFS), and so is every descriptor
 * opened through it. It wraps preview2-shim's descriptors on Node and its in-memory ones in a
 * page; the methods are called on the real object, whose private fields a proxy cannot reach.
 */

/** The descriptor methods that change a file or a directory. */
const WRITE_METHODS = new Set([
  "writeViaStream",
  "appendViaStream",
  "setSize",
  "setTimes",
  "write",
  "createDirectoryAt",
  "setTimesAt",
  "linkAt",
  "removeDirectoryAt",
  "renameAt",
  "symlinkAt",
  "unlinkFileAt",
]);

interface Openable {
  openAt(
    pathFlags: unknown,
    path: string,
    openFlags: Record<string, boolean> | undefined,
    flags: Record<string, boolean> | undefined,
  ): unknown;
  getFlags?(): Record<string, boolean>;
}

export function readOnlyDescriptor<T extends object>(inner: T): T {
  return new Proxy(inner, {
    get(target, property) {
      if (typeof property === "string" && WRITE_METHODS.has(property)) {
        return () => {
          throw "read-only";
        };
      }
      if (property === "openAt") {
        return (
          pathFlags: unknown,
          path: string,
          openFlags: Record<string, boolean> | undefined,
          flags: Record<string, boolean> | undefined,
        ) => {
          if (openFlags?.create || openFlags?.truncate || flags?.write || flags?.mutateDirectory) {
            throw "read-only";
          }
          const opened = (target as unknown as Openable).openAt(pathFlags, path, openFlags, flags);
          return typeof opened === "object" && opened !== null
            ? readOnlyDescriptor(opened)
            : opened;
        };
      }
      if (property === "getFlags") {
        return () => ({
          ...(target as unknown as Openable).getFlags?.(),
          write: false,
          mutateDirectory: false,
        });
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** What a run's writable grants may take in all: bytes written, and directories made. */
export interface WriteBudget {
  bytes: number;
  maxBytes: number;
}

/** A stream's methods that write, and how many bytes each call takes. */
const STREAM_WRITES: Record<string, (args: unknown[]) => number> = {
  write: (args) => byteLength(args[0]),
  blockingWriteAndFlush: (args) => byteLength(args[0]),
  writeZeroes: (args) => Number(args[0]),
  blockingWriteZeroesAndFlush: (args) => Number(args[0]),
  splice: (args) => Number(args[1]),
  blockingSplice: (args) => Number(args[1]),
};

function byteLength(value: unknown): number {
  return value instanceof Uint8Array ? value.byteLength : 0;
}

/**
 * A writable grant's descriptor that charges what it writes to the run's budget (its write quota,
 * limits.writeBytes), and everything opened through it: preview2-shim writes straight to disk on
 * Node and into memory in a page, with no bound of its own. Past the budget a write gets WASI's
 * `insufficient-space` (ENOSPC); growing a file by setSize or an offset counts as writing.
 */
export function budgetedDescriptor<T extends object>(inner: T, budget: WriteBudget): T {
  const charge = (bytes: number) => {
    if (!Number.isFinite(bytes) || bytes < 0 || budget.bytes + bytes > budget.maxBytes) {
      throw "insufficient-space";
    }
    budget.bytes += bytes;
  };
  const stream = (target: object): object =>
    new Proxy(target, {
      get(streamTarget, property) {
        const value = Reflect.get(streamTarget, property, streamTarget);
        if (typeof value !== "function") return value;
        const cost = typeof property === "string" ? STREAM_WRITES[property] : undefined;
        if (cost === undefined) return value.bind(streamTarget);
        return (...args: unknown[]) => {
          try {
            charge(cost(args));
          } catch {
            throw { tag: "closed" };
          }
          return value.apply(streamTarget, args);
        };
      },
    });
  return new Proxy(inner, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      switch (property) {
        case "write":
          return (buffer: unknown, offset: bigint) => {
            charge(byteLength(buffer));
            if (Number(offset) + byteLength(buffer) > budget.maxBytes) throw "insufficient-space";
            return value.call(target, buffer, offset);
          };
        case "setSize":
          return (size: bigint) => {
            charge(Number(size));
            return value.call(target, size);
          };
        case "writeViaStream":
        case "appendViaStream":
          return (...args: unknown[]) => {
            if (Number(args[0] ?? 0) > budget.maxBytes) throw "insufficient-space";
            const opened = value.apply(target, args);
            return typeof opened === "object" && opened !== null ? stream(opened) : opened;
          };
        case "openAt":
          return (...args: unknown[]) => {
            const opened = value.apply(target, args);
            return typeof opened === "object" && opened !== null
              ? budgetedDescriptor(opened, budget)
              : opened;
          };
        default:
          return value.bind(target);
      }
    },
  });
}
