/**
 * A read-only grant for a component: its `wasi:filesystem` descriptor wrapped so that every change
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
