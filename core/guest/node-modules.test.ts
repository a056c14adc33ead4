import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { NODE_MODULES, nodeModuleName, nodeModuleSource } from "./node-modules.ts";
import { createSandbox, type GuestSandbox } from "./test-context.ts";

let s: GuestSandbox;
beforeEach(async () => {
  s = await createSandbox({
    processInfo: () => JSON.stringify({ env: { API_KEY: "k-1", EMPTY: "" }, cwd: "/project" }),
  });
});
afterEach(() => s.dispose());

const thrown = (code: string) =>
  s.run(
    `(() => { try { ${code}; return null; } catch (e) { return [e.name, e.code, e.message]; } })()`,
  );

test("the compiler's export lists are exactly the guest modules' own names", () => {
  for (const [name, module] of Object.entries(NODE_MODULES)) {
    const access = module.property === undefined ? "" : `.${module.property}`;
    const keys = s.run(`Object.keys(__capsule.require(${JSON.stringify(module.chunk)})${access})`);
    expect([...(keys as string[])].sort(), name).toEqual([...module.exports].sort());
  }
});

test("nodeModuleName accepts node: prefixes and only the provided modules", () => {
  expect(
    ["fs", "node:fs", "node:fs/promises", "path/posix", "node:buffer"].map(nodeModuleName),
  ).toEqual(["fs", "fs", "fs/promises", "path/posix", "buffer"]);
  expect(["http", "node:http", "fs/extra", "constructor", "node:"].map(nodeModuleName)).toEqual([
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
  expect(() => nodeModuleSource("http")).toThrow(/"http" is not a sandbox module/);
});

test("__capsule.require loads a module's chunk on first use, once", () => {
  expect(s.loadedChunks).toEqual([]);
  expect(s.run(`__capsule.require("path") === __capsule.require("path")`)).toBe(true);
  expect(s.loadedChunks).toEqual(["path"]);
});

describe("process", () => {
  test("env, cwd, argv and honest identity", () => {
    expect(
      s.run(`[process.env, process.cwd(), process.argv, process.platform, process.arch, process.version,
        process.versions, process.release.name, typeof process.pid, String(process), process === __capsule.require("process"),
        Object.getPrototypeOf(process.env) === Object.prototype]`),
    ).toEqual([
      { API_KEY: "k-1", EMPTY: "" },
      "/project",
      ["capsule", "task"],
      "wasi",
      "wasm32",
      "v0.0.0",
      {},
      "capsule",
      "number",
      "[object process]",
      true,
      true,
    ]);
    s.run(`process.env.NEW = "set"; delete process.env.API_KEY;`);
    expect(s.run(`process.env`)).toEqual({ EMPTY: "", NEW: "set" });
  });

  test("nextTick runs as a microtask with its arguments; hrtime counts forward", async () => {
    expect(
      await s.runAsync(`new Promise((resolve) => {
        const order = [];
        process.nextTick((a, b) => order.push("tick:" + a + b), 1, 2);
        order.push("sync");
        setTimeout(() => resolve(order), 0);
      })`),
    ).toEqual(["sync", "tick:12"]);
    expect(
      s.run(`(() => {
        const start = process.hrtime(), big = process.hrtime.bigint();
        let x = 0; for (let i = 0; i < 1e5; i++) x += i;
        const diff = process.hrtime(start), big2 = process.hrtime.bigint();
        return [start.length, Number.isInteger(start[1]), diff[0] >= 0, diff[1] >= 0 && diff[1] < 1e9,
          diff[0] * 1e9 + diff[1] > 0, typeof big, big2 > big, process.uptime() > 0];
      })()`),
    ).toEqual([2, true, true, true, true, "bigint", true, true]);
  });

  test("stdout and stderr write to the task's log, one entry per write", () => {
    s.run(`process.stdout.write("line one\\n"); process.stdout.write(new TextEncoder().encode("bytes"));
      process.stderr.write("oops\\n"); process.stdout.write("");`);
    expect(s.logs).toEqual([
      { level: "log", text: "line one" },
      { level: "log", text: "bytes" },
      { level: "error", text: "oops" },
    ]);
  });

  test("exit and chdir explain why they are missing", () => {
    expect(thrown(`process.exit(1)`)).toEqual([
      "Error",
      "ERR_NOT_AVAILABLE",
      "process.exit(1) is not available inside the sandbox; a task ends by returning a value (success) or throwing an error (failure)",
    ]);
    expect((thrown(`process.chdir("/")`) as string[])[2]).toMatch(
      /the working directory stays \/project/,
    );
  });

  test("listeners are kept and emit calls them", () => {
    expect(
      s.run(`(() => {
        const seen = [];
        const f = (x) => seen.push("on:" + x);
        process.on("custom", f).once("custom", (x) => seen.push("once:" + x));
        process.emit("custom", 1); process.emit("custom", 2);
        process.off("custom", f);
        return [seen, process.emit("custom", 3), process.listenerCount("custom")];
      })()`),
    ).toEqual([["on:1", "once:1", "on:2"], false, 0]);
  });

  test("the global is a lazy accessor that loads only the process chunk", () => {
    expect(s.run(`typeof process`)).toBe("object");
    expect(s.loadedChunks).toEqual(["process"]);
  });
});

describe("buffer", () => {
  test("Buffer global matches Node's results", () => {
    const text = "héllo wörld ☃";
    expect(
      s.run(`(() => {
        const b = Buffer.from(${JSON.stringify(text)});
        return [b.length, b.toString("hex"), b.toString("base64"), b.toString("base64url"),
          Buffer.from(b.toString("base64url"), "base64url").toString(), Buffer.byteLength("☃☃", "utf8"),
          Buffer.concat([Buffer.from("a"), Buffer.from([98])]).toString(), b.readUInt16BE(0),
          Buffer.alloc(3, 1).toJSON(), Buffer.isBuffer(b), b instanceof Uint8Array, Buffer.isEncoding("base64url"),
          Buffer.compare(Buffer.from("a"), Buffer.from("b")), b.subarray(1, 3).toString("latin1"),
          Buffer.from("ff00", "hex").readInt16LE(0), b.equals(Buffer.from(b))];
      })()`),
    ).toEqual(
      (() => {
        const b = Buffer.from(text);
        return [
          b.length,
          b.toString("hex"),
          b.toString("base64"),
          b.toString("base64url"),
          text,
          Buffer.byteLength("☃☃", "utf8"),
          "ab",
          b.readUInt16BE(0),
          Buffer.alloc(3, 1).toJSON(),
          true,
          true,
          true,
          -1,
          b.subarray(1, 3).toString("latin1"),
          Buffer.from("ff00", "hex").readInt16LE(0),
          true,
        ];
      })(),
    );
  });

  test("the buffer module carries Node's names; the global is the same Buffer", () => {
    expect(
      s.run(`(() => { const m = __capsule.require("buffer");
        return [m.Buffer === Buffer, m.kMaxLength, m.constants.MAX_LENGTH === m.kMaxLength, m.atob(m.btoa("hi"))]; })()`),
    ).toEqual([true, 0x7fffffff, true, "hi"]);
  });
});
