import { posix } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { createSandbox, type FsCallHandler, type GuestSandbox } from "./test-context.ts";

type Entry =
  | { type: "file"; data: Uint8Array; mode: number; mtimeMs: number }
  | { type: "directory"; mode: number; mtimeMs: number }
  | { type: "symlink"; target: string; mode: number; mtimeMs: number };

/** The arguments of every operation, as the bridge sends them. */
interface HostArgs {
  path: string;
  from: string;
  to: string;
  target: string;
  flag: "w" | "a" | "wx";
  flags: string;
  recursive: boolean;
  force: boolean;
  follow: boolean;
  exclusive: boolean;
  fd: number;
  length: number;
  position: number | null;
}

class HostFailure extends Error {
  constructor(
    readonly code: string,
    readonly syscall: string,
    readonly path?: string,
    readonly dest?: string,
  ) {
    super(code);
  }
}

/**
 * The host side of `fsCall` for these tests: an in-memory tree under "/", relative paths resolved
 * against "/project" (as the real host resolves them against the guest's cwd). Failures carry
 * Node's codes and syscall names and no message, so the guest composes Node's message.
 */
class MemoryFiles {
  readonly entries = new Map<string, Entry>();
  readonly calls: string[] = [];
  private readonly handles = new Map<number, { path: string; position: number; append: boolean }>();
  private nextFd = 3;
  hostMessage: string | undefined;

  constructor() {
    this.entries.set("/", { type: "directory", mode: 0o755, mtimeMs: 1 });
    this.entries.set("/project", { type: "directory", mode: 0o755, mtimeMs: 1 });
  }

  readonly handle: FsCallHandler = (op, argsJson, data) => {
    this.calls.push(op);
    try {
      const result = this.run(op, JSON.parse(argsJson), data);
      return result instanceof Uint8Array ? result : JSON.stringify({ ok: result });
    } catch (error) {
      if (!(error instanceof HostFailure)) throw error;
      const { code, syscall, path, dest } = error;
      const denied = code === "EACCES";
      return JSON.stringify({
        error: { code, syscall, path, dest, message: this.hostMessage, denied },
      });
    }
  };

  file(path: string, text: string, mode = 0o644): void {
    this.entries.set(posix.resolve("/project", path), {
      type: "file",
      data: new TextEncoder().encode(text),
      mode,
      mtimeMs: 1_700_000_000_000,
    });
  }

  dir(path: string): void {
    this.entries.set(posix.resolve("/project", path), {
      type: "directory",
      mode: 0o755,
      mtimeMs: 1_700_000_000_000,
    });
  }

  text(path: string): string | undefined {
    const entry = this.entries.get(posix.resolve("/project", path));
    return entry?.type === "file" ? new TextDecoder().decode(entry.data) : undefined;
  }

  private follow(absolute: string, syscall: string, shown: string): string {
    let path = absolute;
    for (let hops = 0; hops < 8; hops++) {
      const entry = this.entries.get(path);
      if (entry?.type !== "symlink") return path;
      path = posix.resolve(posix.dirname(path), entry.target);
    }
    throw new HostFailure("ELOOP", syscall, shown);
  }

  private parentOf(absolute: string, syscall: string, shown: string): void {
    const parent = this.entries.get(posix.dirname(absolute));
    if (!parent) throw new HostFailure("ENOENT", syscall, shown);
    if (parent.type !== "directory") throw new HostFailure("ENOTDIR", syscall, shown);
  }

  private children(absolute: string): string[] {
    const prefix = absolute === "/" ? "/" : `${absolute}/`;
    return [...this.entries.keys()].filter(
      (key) => key.startsWith(prefix) && !key.slice(prefix.length).includes("/") && key !== "/",
    );
  }

  private stat(entry: Entry) {
    const size =
      entry.type === "file" ? entry.data.byteLength : entry.type === "symlink" ? 6 : 4096;
    const { mtimeMs } = entry;
    return {
      type: entry.type,
      size,
      mode: entry.mode,
      mtimeMs,
      atimeMs: mtimeMs,
      ctimeMs: mtimeMs,
      birthtimeMs: 1000,
    };
  }

  private write(absolute: string, bytes: Uint8Array, append: boolean): void {
    const entry = this.entries.get(absolute);
    const data =
      append && entry?.type === "file" ? new Uint8Array([...entry.data, ...bytes]) : bytes.slice();
    this.entries.set(absolute, { type: "file", data, mode: 0o644, mtimeMs: 1_700_000_000_000 });
  }

  private run(op: string, args: HostArgs, data?: Uint8Array): unknown {
    const at = (path: string) => posix.resolve("/project", path);
    const fd = (syscall: string) => {
      const handle = this.handles.get(args.fd);
      if (!handle) throw new HostFailure("EBADF", syscall, undefined);
      return handle;
    };
    switch (op) {
      case "readFile": {
        const path = this.follow(at(args.path), "open", args.path);
        if (path.startsWith("/project/locked/")) throw new HostFailure("EACCES", "open", args.path);
        const entry = this.entries.get(path);
        if (!entry) throw new HostFailure("ENOENT", "open", args.path);
        if (entry.type !== "file") throw new HostFailure("EISDIR", "read", undefined);
        return entry.data.slice();
      }
      case "writeFile": {
        const path = this.follow(at(args.path), "open", args.path);
        this.parentOf(path, "open", args.path);
        const entry = this.entries.get(path);
        if (entry?.type === "directory") throw new HostFailure("EISDIR", "open", args.path);
        if (entry && args.flag === "wx") throw new HostFailure("EEXIST", "open", args.path);
        this.write(path, data ?? new Uint8Array(), args.flag === "a");
        return null;
      }
      case "readdir": {
        const path = this.follow(at(args.path), "scandir", args.path);
        const entry = this.entries.get(path);
        if (!entry) throw new HostFailure("ENOENT", "scandir", args.path);
        if (entry.type !== "directory") throw new HostFailure("ENOTDIR", "scandir", args.path);
        return this.children(path)
          .sort()
          .map((child) => ({ name: posix.basename(child), type: this.entries.get(child)?.type }));
      }
      case "stat": {
        const syscall = args.follow ? "stat" : "lstat";
        const path = args.follow ? this.follow(at(args.path), syscall, args.path) : at(args.path);
        const entry = this.entries.get(path);
        if (!entry) throw new HostFailure("ENOENT", syscall, args.path);
        return this.stat(entry);
      }
      case "mkdir": {
        const path = at(args.path);
        const entry = this.entries.get(path);
        if (entry) {
          if (args.recursive && entry.type === "directory") return null;
          throw new HostFailure("EEXIST", "mkdir", args.path);
        }
        if (!this.entries.has(posix.dirname(path))) {
          if (!args.recursive) throw new HostFailure("ENOENT", "mkdir", args.path);
          this.run("mkdir", { path: posix.dirname(path), recursive: true } as HostArgs);
        }
        this.dir(path);
        return null;
      }
      case "rm":
      case "rmdir":
      case "unlink": {
        const path = at(args.path);
        const entry = this.entries.get(path);
        if (!entry) {
          if (op === "rm" && args.force) return null;
          throw new HostFailure("ENOENT", op === "rm" ? "lstat" : op, args.path);
        }
        const isDirectory = entry.type === "directory";
        if (op === "unlink" && isDirectory) throw new HostFailure("EISDIR", op, args.path);
        if (op === "rmdir" && !isDirectory) throw new HostFailure("ENOTDIR", op, args.path);
        if (isDirectory && this.children(path).length > 0 && !(op === "rm" && args.recursive)) {
          throw new HostFailure(op === "rm" ? "EISDIR" : "ENOTEMPTY", op, args.path);
        }
        for (const key of [...this.entries.keys()]) {
          if (key === path || key.startsWith(`${path}/`)) this.entries.delete(key);
        }
        return null;
      }
      case "rename":
      case "copyFile": {
        const syscall = op === "rename" ? "rename" : "copyfile";
        const from =
          op === "rename" ? at(args.from) : this.follow(at(args.from), syscall, args.from);
        const to = at(args.to);
        const entry = this.entries.get(from);
        if (!entry) throw new HostFailure("ENOENT", syscall, args.from, args.to);
        if (args.exclusive && this.entries.has(to)) {
          throw new HostFailure("EEXIST", syscall, args.from, args.to);
        }
        this.entries.set(to, structuredClone(entry));
        if (op === "rename") {
          for (const key of [...this.entries.keys()]) {
            if (key.startsWith(`${from}/`)) {
              this.entries.set(to + key.slice(from.length), this.entries.get(key) as Entry);
              this.entries.delete(key);
            }
          }
          this.entries.delete(from);
        }
        return null;
      }
      case "symlink": {
        const path = at(args.path);
        if (this.entries.has(path))
          throw new HostFailure("EEXIST", "symlink", args.target, args.path);
        this.entries.set(path, { type: "symlink", target: args.target, mode: 0o777, mtimeMs: 1 });
        return null;
      }
      case "readlink": {
        const entry = this.entries.get(at(args.path));
        if (!entry) throw new HostFailure("ENOENT", "readlink", args.path);
        if (entry.type !== "symlink") throw new HostFailure("EINVAL", "readlink", args.path);
        return entry.target;
      }
      case "open": {
        const { flags } = args;
        const path = this.follow(at(args.path), "open", args.path);
        const entry = this.entries.get(path);
        if (flags.includes("x") && entry) throw new HostFailure("EEXIST", "open", args.path);
        if (flags.startsWith("r") && !entry) throw new HostFailure("ENOENT", "open", args.path);
        if (entry?.type === "directory" && !flags.startsWith("r")) {
          throw new HostFailure("EISDIR", "open", args.path);
        }
        if (flags.startsWith("w") || (!entry && flags.startsWith("a"))) {
          this.parentOf(path, "open", args.path);
          this.write(path, new Uint8Array(), false);
        }
        const fd = this.nextFd++;
        this.handles.set(fd, { path, position: 0, append: flags.startsWith("a") });
        return fd;
      }
      case "read": {
        const handle = fd("read");
        const entry = this.entries.get(handle.path) as Entry & { type: "file" };
        const start = args.position ?? handle.position;
        const bytes = entry.data.slice(start, start + args.length);
        if (args.position === null) handle.position += bytes.byteLength;
        return bytes;
      }
      case "write": {
        const handle = fd("write");
        const entry = this.entries.get(handle.path) as Entry & { type: "file" };
        const bytes = data ?? new Uint8Array();
        const start = handle.append ? entry.data.byteLength : (args.position ?? handle.position);
        const next = new Uint8Array(Math.max(entry.data.byteLength, start + bytes.byteLength));
        next.set(entry.data);
        next.set(bytes, start);
        entry.data = next;
        if (args.position === null) handle.position = start + bytes.byteLength;
        return bytes.byteLength;
      }
      case "fstat":
        return this.stat(this.entries.get(fd("fstat").path) as Entry);
      case "close":
        fd("close");
        this.handles.delete(args.fd);
        return null;
      default:
        throw new Error(`the test host has no operation ${op}`);
    }
  }
}

let s: GuestSandbox;
let files: MemoryFiles;
beforeEach(async () => {
  files = new MemoryFiles();
  s = await createSandbox({
    fsCall: files.handle,
    processInfo: () => JSON.stringify({ env: {}, cwd: "/project" }),
  });
  s.run(`var fs = __capsule.require("fs");`);
});
afterEach(() => s.dispose());

/** What the guest threw, as the properties a Node fs error carries. */
const failure = (code: string) =>
  s.run(`(() => { try { ${code}; return "no error"; } catch (e) {
    return { isError: e instanceof Error, name: e.name, message: e.message, code: e.code,
      errno: e.errno, syscall: e.syscall, path: e.path, dest: e.dest }; } })()`);

describe("reading and writing whole files", () => {
  test("strings and bytes round-trip; results without an encoding are Buffers", () => {
    expect(
      s.run(`
        fs.writeFileSync("notes.txt", "héllo €");
        fs.writeFileSync("data/../bytes.bin", new Uint8Array([0, 255, 10]), { flag: "w" });
        const buffer = fs.readFileSync("bytes.bin");
        [fs.readFileSync("notes.txt", "utf8"), fs.readFileSync("/project/notes.txt", { encoding: "utf-8" }),
         Buffer.isBuffer(buffer), buffer instanceof Uint8Array, [...buffer], buffer.length,
         fs.readFileSync(Buffer.from("notes.txt")).toString(), fs.readFileSync(new URL("file:///project/notes.txt"), "utf8")]`),
    ).toEqual(["héllo €", "héllo €", true, true, [0, 255, 10], 3, "héllo €", "héllo €"]);
    expect(files.text("notes.txt")).toBe("héllo €");
  });

  test.each([
    "utf8",
    "base64",
    "hex",
    "latin1",
    "base64url",
    "utf16le",
    "ascii",
  ])("encoding %s matches Node's Buffer both ways", (encoding) => {
    const text = "Zürich ☃ 42\n";
    const bytes = Buffer.from(text, "utf8");
    const encoded = bytes.toString(encoding as BufferEncoding);
    const data = new Uint8Array(bytes);
    files.entries.set("/project/in.bin", { type: "file", data, mode: 0o644, mtimeMs: 1 });
    expect(s.run(`fs.readFileSync("in.bin", ${JSON.stringify(encoding)})`)).toBe(encoded);
    s.run(`fs.writeFileSync("out.bin", ${JSON.stringify(encoded)}, ${JSON.stringify(encoding)})`);
    const written = (files.entries.get("/project/out.bin") as { data: Uint8Array }).data;
    expect(Buffer.from(written)).toEqual(Buffer.from(encoded, encoding as BufferEncoding));
  });

  test("append, exclusive and read-write flags", () => {
    s.run(`fs.appendFileSync("log.txt", "a"); fs.appendFileSync("log.txt", Buffer.from("b"));
      fs.writeFileSync("log.txt", "c", { flag: "a" });`);
    expect(files.text("log.txt")).toBe("abc");
    expect(failure(`fs.writeFileSync("log.txt", "x", { flag: "wx" })`)).toMatchObject({
      code: "EEXIST",
      syscall: "open",
      message: "EEXIST: file already exists, open 'log.txt'",
    });
    s.run(`fs.writeFileSync("log.txt", "Z", { flag: "r+" })`);
    expect(files.text("log.txt")).toBe("Zbc");
    expect(s.run(`fs.readFileSync("log.txt", { encoding: "utf8", flag: "a+" })`)).toBe("Zbc");
  });

  test("bad arguments throw Node's TypeErrors before any host call", () => {
    expect(failure(`fs.readFileSync(true)`)).toMatchObject({
      name: "TypeError",
      code: "ERR_INVALID_ARG_TYPE",
      message: expect.stringMatching(
        /^The "path" argument must be of type string or an instance of Buffer or URL\. Received type boolean \(true\)$/,
      ),
    });
    expect(failure(`fs.readFileSync("a", "klingon")`)).toMatchObject({
      code: "ERR_INVALID_ARG_VALUE",
      message: "The argument 'encoding' is invalid encoding. Received 'klingon'",
    });
    expect(failure(`fs.writeFileSync("a", { not: "data" })`)).toMatchObject({
      code: "ERR_INVALID_ARG_TYPE",
    });
    expect(failure(`fs.readFileSync("a\\u0000b")`)).toMatchObject({
      code: "ERR_INVALID_ARG_VALUE",
    });
    expect(failure(`fs.readFileSync(new URL("http://x/y"))`)).toMatchObject({
      code: "ERR_INVALID_URL_SCHEME",
    });
    expect(files.calls).toEqual([]);
  });
});

describe("errors", () => {
  test("carry errno, code, syscall, path and Node's message", () => {
    expect(failure(`fs.readFileSync("data/x.txt")`)).toEqual({
      isError: true,
      name: "Error",
      message: "ENOENT: no such file or directory, open 'data/x.txt'",
      code: "ENOENT",
      errno: -2,
      syscall: "open",
      path: "data/x.txt",
    });
    expect(failure(`fs.renameSync("gone", "there")`)).toMatchObject({
      message: "ENOENT: no such file or directory, rename 'gone' -> 'there'",
      errno: -2,
      syscall: "rename",
      path: "gone",
      dest: "there",
    });
    files.dir("full");
    files.file("full/x", "");
    expect(failure(`fs.rmdirSync("full")`)).toMatchObject({
      message: "ENOTEMPTY: directory not empty, rmdir 'full'",
      errno: -39,
    });
    expect(failure(`fs.readdirSync("nope")`)).toMatchObject({
      message: "ENOENT: no such file or directory, scandir 'nope'",
    });
  });

  test("a message from the host is kept as the host wrote it", () => {
    files.hostMessage = "ENOENT: no such file or directory, open 'secret' (a detail)";
    expect(failure(`fs.readFileSync("secret")`)).toMatchObject({
      message: "ENOENT: no such file or directory, open 'secret' (a detail)",
      code: "ENOENT",
    });
  });

  test("a refusal the host marks as denied carries the runtime's hidden mark", () => {
    files.file("ro.txt", "x", 0o444);
    const marks = s.run(`(() => {
      const mark = Symbol.for("capsule.denied");
      const read = (code) => { try { code(); } catch (e) { return [e.code, e[mark] === true, Object.keys(e).length]; } };
      return [read(() => fs.readFileSync("nope")), read(() => fs.readFileSync("locked/key")),
        read(() => fs.accessSync("ro.txt", fs.constants.W_OK))];
    })()`);
    // Only the host's refusal is marked (never as an enumerable key); mode bits are not a grant.
    expect(marks).toEqual([
      ["ENOENT", false, 4],
      ["EACCES", true, 4],
      ["EACCES", false, 4],
    ]);
  });
});

describe("directories, stats and links", () => {
  test("readdir: names, Dirents, recursive and Buffer names", () => {
    files.dir("d");
    files.dir("d/sub");
    files.file("d/a.txt", "1");
    files.file("d/sub/b.txt", "22");
    s.run(`fs.symlinkSync("a.txt", "d/link")`);
    expect(
      s.run(`[fs.readdirSync("d"), fs.readdirSync("d", { recursive: true }),
        fs.readdirSync("d", { withFileTypes: true }).map((e) => [e.name, e.parentPath, e.isFile(), e.isDirectory(), e.isSymbolicLink(), e instanceof fs.Dirent]),
        fs.readdirSync("d/", { withFileTypes: true, recursive: true }).map((e) => e.parentPath + ":" + e.name),
        fs.readdirSync("d", "buffer").map((b) => Buffer.isBuffer(b) && b.toString())]`),
    ).toEqual([
      ["a.txt", "link", "sub"],
      ["a.txt", "link", "sub", "sub/b.txt"],
      [
        ["a.txt", "d", true, false, false, true],
        ["link", "d", false, false, true, true],
        ["sub", "d", false, true, false, true],
      ],
      ["d/:a.txt", "d/:link", "d/:sub", "d/sub:b.txt"],
      ["a.txt", "link", "sub"],
    ]);
  });

  test("stat and lstat give Stats with Node's methods, Dates and mode bits", () => {
    files.file("f.txt", "12345");
    s.run(`fs.symlinkSync("f.txt", "l")`);
    expect(
      s.run(`(() => {
        const st = fs.statSync("f.txt"), ls = fs.lstatSync("l"), via = fs.statSync("l"), d = fs.statSync(".");
        return [st.isFile(), st.isDirectory(), st.isSymbolicLink(), st.size, st.mtimeMs,
          st.mtime instanceof Date, st.mtime.getTime(), st.mode.toString(8), st instanceof fs.Stats,
          ls.isSymbolicLink(), ls.isFile(), via.isFile(), via.size, d.isDirectory(), d.mode.toString(8),
          fs.statSync("missing", { throwIfNoEntry: false }) === undefined, st.birthtime.getTime()];
      })()`),
    ).toEqual([
      true,
      false,
      false,
      5,
      1_700_000_000_000,
      true,
      1_700_000_000_000,
      "100644",
      true,
      true,
      false,
      true,
      5,
      true,
      "40755",
      true,
      1000,
    ]);
  });

  test("existsSync and accessSync", () => {
    files.file("ro.txt", "x", 0o444);
    expect(
      s.run(`[fs.existsSync("ro.txt"), fs.existsSync("nope"), fs.existsSync(42), fs.existsSync(),
        fs.accessSync("ro.txt") === undefined, fs.accessSync("ro.txt", fs.constants.R_OK) === undefined]`),
    ).toEqual([true, false, false, false, true, true]);
    expect(failure(`fs.accessSync("ro.txt", fs.constants.W_OK)`)).toMatchObject({
      code: "EACCES",
      errno: -13,
      message: "EACCES: permission denied, access 'ro.txt'",
    });
    expect(failure(`fs.accessSync("nope")`)).toMatchObject({
      message: "ENOENT: no such file or directory, access 'nope'",
      syscall: "access",
    });
  });

  test("mkdir returns the first directory it created; rm, rmdir, unlink, rename, copyFile", () => {
    expect(
      s.run(`[fs.mkdirSync("a/b/c", { recursive: true }), fs.mkdirSync("a/b/c", { recursive: true }),
        fs.mkdirSync("/project/a/x/y", { recursive: true }), fs.mkdirSync("solo")].map(String)`),
    ).toEqual(["a", "undefined", "/project/a/x", "undefined"]);
    expect(failure(`fs.mkdirSync("solo")`)).toMatchObject({ code: "EEXIST", syscall: "mkdir" });
    s.run(`fs.writeFileSync("a/b/c/f", "1"); fs.copyFileSync("a/b/c/f", "copy");
      fs.renameSync("copy", "moved"); fs.rmSync("a/x", { recursive: true }); fs.rmdirSync("solo");
      fs.rmSync("not-there", { force: true });`);
    expect(files.text("moved")).toBe("1");
    expect(files.entries.has("/project/copy")).toBe(false);
    expect(files.entries.has("/project/a/x")).toBe(false);
    expect(files.entries.has("/project/solo")).toBe(false);
    expect(
      failure(`fs.copyFileSync("moved", "a/b/c/f", fs.constants.COPYFILE_EXCL)`),
    ).toMatchObject({
      code: "EEXIST",
      message: "EEXIST: file already exists, copyfile 'moved' -> 'a/b/c/f'",
    });
    s.run(`fs.unlinkSync("moved")`);
    expect(files.entries.has("/project/moved")).toBe(false);
    expect(failure(`fs.unlinkSync("moved")`)).toMatchObject({ code: "ENOENT", syscall: "unlink" });
  });

  test("symlink and readlink", () => {
    expect(
      s.run(
        `fs.symlinkSync("../target", "ln"); [fs.readlinkSync("ln"), fs.readlinkSync("ln", "buffer").toString("hex")]`,
      ),
    ).toEqual(["../target", Buffer.from("../target").toString("hex")]);
    expect(failure(`fs.symlinkSync("t", "ln")`)).toMatchObject({
      message: "EEXIST: file already exists, symlink 't' -> 'ln'",
      path: "t",
      dest: "ln",
    });
  });
});

describe("file descriptors", () => {
  test("open, write, read at positions, fstat, close", () => {
    expect(
      s.run(`(() => {
        const fd = fs.openSync("fd.txt", "w+");
        const wrote = [fs.writeSync(fd, "hello "), fs.writeSync(fd, Buffer.from("xxworldxx"), 2, 5),
          fs.writeSync(fd, "H", 0)];
        const buf = Buffer.alloc(20);
        const read = fs.readSync(fd, buf, 0, 20, 0);
        const partial = Buffer.alloc(4);
        const some = fs.readSync(fd, partial, { offset: 1, length: 3, position: 6 });
        const size = fs.fstatSync(fd).size;
        fs.closeSync(fd);
        const ro = fs.openSync("fd.txt", fs.constants.O_RDONLY);
        const all = fs.readFileSync(ro, "utf8");
        fs.closeSync(ro);
        return [typeof fd, wrote, read, buf.toString("utf8", 0, read), some, [...partial], size, all];
      })()`),
    ).toEqual(["number", [6, 5, 1], 11, "Hello world", 3, [0, 119, 111, 114], 11, "Hello world"]);
    expect(failure(`fs.closeSync(3)`)).toMatchObject({
      code: "EBADF",
      syscall: "close",
      errno: -9,
    });
    expect(failure(`fs.readSync(-1, Buffer.alloc(1))`)).toMatchObject({ code: "ERR_OUT_OF_RANGE" });
    expect(failure(`fs.openSync("x", "q")`)).toMatchObject({ code: "ERR_INVALID_ARG_VALUE" });
  });
});

describe("callbacks and promises", () => {
  test("callbacks run after the current job, error first", async () => {
    files.file("c.txt", "cb");
    expect(
      await s.runAsync(`new Promise((resolve) => {
        const order = [];
        fs.readFile("c.txt", "utf8", (err, text) => order.push(["read", err, text]));
        fs.stat("nope", (err) => order.push(["stat", err.code, err.syscall]));
        fs.mkdir("m/n", { recursive: true }, (err, first) => order.push(["mkdir", err, first]));
        fs.exists("c.txt", (found) => order.push(["exists", found]));
        fs.open("c.txt", "r", (err, fd) => {
          const buf = Buffer.alloc(2);
          fs.read(fd, buf, 0, 2, 0, (err, n, same) => {
            order.push(["read-fd", err, n, same === buf, buf.toString()]);
            fs.close(fd, (err) => { order.push(["close", err]); resolve(order); });
          });
        });
        order.push("sync");
      })`),
    ).toEqual([
      "sync",
      ["read", null, "cb"],
      ["stat", "ENOENT", "stat"],
      ["mkdir", null, "m"],
      ["exists", true],
      ["read-fd", null, 2, true, "cb"],
      ["close", null],
    ]);
    expect(failure(`fs.readFile("c.txt")`)).toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
    expect(failure(`fs.readFile(1n, () => {})`)).toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
  });

  test("fs.promises and FileHandle", async () => {
    files.file("p.txt", "promised");
    expect(
      await s.runAsync(`(async () => {
        const p = fs.promises;
        const out = [p === __capsule.require("fs").promises];
        out.push(await p.readFile("p.txt", "utf8"));
        await p.writeFile("q.txt", "one");
        await p.appendFile("q.txt", Buffer.from("+two"));
        out.push((await p.readFile("q.txt")).toString());
        out.push((await p.readdir(".")).join());
        out.push((await p.stat("q.txt")).size, (await p.lstat("q.txt")).isFile());
        out.push(await p.mkdir("x/y", { recursive: true }));
        await p.rename("q.txt", "x/q.txt"); await p.copyFile("x/q.txt", "x/r.txt");
        await p.symlink("x/r.txt", "ln"); out.push(await p.readlink("ln"));
        await p.access("x/r.txt"); await p.unlink("ln"); await p.rm("x", { recursive: true });
        out.push(await p.readFile("gone").catch((e) => e.message));
        const fh = await p.open("h.txt", "w+");
        out.push(typeof fh.fd, (await fh.write("handle data")).bytesWritten);
        const { bytesRead, buffer } = await fh.read(Buffer.alloc(6), 0, 6, 7);
        out.push(bytesRead, buffer.toString());
        out.push((await fh.read({ buffer: Buffer.alloc(3), position: 0 })).buffer.toString());
        out.push((await fh.stat()).size, (await p.readFile(fh, "utf8")));
        await fh.close(); await fh.close();
        out.push(await p.readFile("h.txt", "utf8"));
        return out;
      })()`),
    ).toEqual([
      true,
      "promised",
      "one+two",
      "p.txt,q.txt",
      7,
      true,
      "x",
      "x/r.txt",
      "ENOENT: no such file or directory, open 'gone'",
      "number",
      11,
      4,
      "data\u0000\u0000",
      "han",
      11,
      "",
      "handle data",
    ]);
  });

  test("APIs the sandbox lacks throw a clear error", () => {
    expect(failure(`fs.createReadStream("x")`)).toMatchObject({
      code: "ERR_NOT_AVAILABLE",
      message: expect.stringMatching(
        /^fs\.createReadStream\(\) is not available inside the sandbox; /,
      ),
    });
    expect(failure(`fs.realpathSync("x")`)).toMatchObject({ code: "ERR_NOT_AVAILABLE" });
  });
});

test("the fs chunk loads only when imported, and Buffer only when a call needs it", () => {
  expect(s.loadedChunks).toEqual(["fs"]);
  s.run(`fs.mkdirSync("lazy")`);
  expect(s.loadedChunks).toEqual(["fs"]);
  s.run(`fs.readdirSync(".")`);
  expect(s.loadedChunks).toEqual(["fs"]);
  s.run(`fs.readFileSync; fs.writeFileSync("x", "y")`);
  expect(s.loadedChunks).toContain("buffer");
});
