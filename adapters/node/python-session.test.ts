import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeImage, encodeImage } from "../../core/session/session.ts";
import { runPython } from "./agent.ts";
import { Session } from "./session.ts";
import { makeProject } from "./test/fixtures.ts";

const project = makeProject();
const sessions: Session[] = [];
afterAll(async () => {
  for (const session of sessions) await session.close();
  project.cleanup();
});

function open(options: ConstructorParameters<typeof Session>[1] = {}): Session {
  const session = new Session("python", { cwd: project.dir, ...options });
  sessions.push(session);
  return session;
}

const SLOW = 180_000;

describe("Python session state", () => {
  it(
    "keeps functions, class instances, imported modules, generators and closures",
    async () => {
      const session = open();
      expect(
        await session.run(
          [
            "import json, collections",
            "base = 40",
            "def add(a): return a + base",
            "class Box:",
            "    def __init__(self, v): self.v = v",
            "    def twice(self): return self.v * 2",
            "box = Box(21)",
            "counts = collections.Counter('abracadabra')",
            "def counter():",
            "    n = 0",
            "    def step():",
            "        nonlocal n",
            "        n += 1",
            "        return n",
            "    return step",
            "step = counter()",
            "gen = (i * i for i in range(10))",
            "print('set up')",
            "base",
          ].join("\n"),
        ),
      ).toBe("set up\n40");
      expect(await session.run("add(2), box.twice(), counts['a'], json.dumps({'k': [1]})")).toBe(
        `(42, 42, 5, '{"k": [1]}')`,
      );
      expect(await session.run("step(); step()")).toBe("2");
      expect(await session.run("next(gen), next(gen), next(gen)")).toBe("(0, 1, 4)");
      expect(await session.run("step(), next(gen), isinstance(box, Box)")).toBe("(3, 9, True)");
      expect(session.stateBytes).toBeGreaterThan(1_000_000);
    },
    SLOW,
  );

  it(
    "leaves the state as it was when a call fails (exception, fuel)",
    async () => {
      const session = open({ compute: "LOW" });
      await session.run("n = 1\nkept = [1]");
      const raised = await session.runCode("n = 100\nkept.append(2)\nraise ValueError('no')");
      expect(raised.success).toBe(false);
      expect(raised.error?.error_type).toBe("task_error");
      expect(raised.error?.message).toMatch(/^ValueError: no/);
      const spun = await session.runCode("n = 200\nkept.append(3)\nwhile True: pass");
      expect(spun.error?.error_type).toBe("fuel_exhausted");
      expect(await session.run("n, kept")).toBe("(1, [1])");
    },
    SLOW,
  );

  it(
    "refuses to keep what cannot carry over (an open file, a JavaScript object), and keeps the state before it",
    async () => {
      const session = open();
      await session.run("n = 1");
      const left = await session.runCode("n = 2\nf = open('/workspace/log.txt', 'w')");
      expect(left.success).toBe(false);
      expect(left.error?.error_type).toBe("task_error");
      expect(left.error?.message).toMatch(/left a file open .*close it/);
      const proxy = await session.runCode(
        "n = 3\nfrom pyodide.ffi import to_js\nkept = to_js([1, 2])",
      );
      expect(proxy.error?.error_type).toBe("task_error");
      expect(proxy.error?.message).toMatch(/keeps JavaScript values .* cannot carry over/);
      expect(await session.run("n")).toBe("1");
    },
    SLOW,
  );

  it(
    "stops a cell that floods or forges the state channel, and keeps the state before it",
    async () => {
      // Pyodide is no sandbox: the task reaches its process's JavaScript and writes to the
      // channel its image goes back on. The host bounds what it collects there (ram + facts).
      const session = open({ ram: "64MB" });
      await session.run("n = 1");
      const writer = "import js\nfs = js.process.getBuiltinModule('fs')\nn = 2\n";
      const flood = await session.runCode(
        `${writer}chunk = 'x' * (8 * 1024 * 1024)\nfor _ in range(12):\n    fs.writeSync(4, chunk)\ndel fs, js\n'sent'`,
      );
      expect(flood.success).toBe(false);
      expect(flood.error?.message).toMatch(/sent a session state larger than \d+ bytes/);
      const forged = await session.runCode(
        `${writer}fs.writeSync(4, 'not an image')\ndel fs, js\n'sent'`,
      );
      expect(forged.success).toBe(false);
      // Reaching the process's JavaScript leaves proxies behind, so such a call is refused before
      // its image is read; the next call's fresh process never sees the forged bytes.
      expect(forged.error?.error_type).toBe("task_error");
      expect(await session.run("n")).toBe("1");
    },
    SLOW,
  );

  it(
    "forks into an independent copy, both ways",
    async () => {
      const session = open();
      await session.run("items = ['a']");
      const copy = await session.fork();
      sessions.push(copy);
      await session.run("items.append('original')");
      await copy.run("items.append('copy')");
      expect(await session.run("items")).toBe("['a', 'original']");
      expect(await copy.run("items")).toBe("['a', 'copy']");
    },
    SLOW,
  );

  it(
    "keeps sessions apart, and away from stateless cells",
    async () => {
      const one = open();
      const two = open();
      await one.run("secret = 'one'");
      await expect(two.run("secret")).rejects.toThrow(/NameError: name 'secret' is not defined/);
      await expect(runPython("secret", { cwd: project.dir })).rejects.toThrow(/NameError/);
      expect(await one.run("secret")).toBe("one");
    },
    SLOW,
  );

  it(
    "reads in one call the workspace file another call wrote",
    async () => {
      const session = open();
      await session.run("with open('/workspace/note.txt', 'w') as f: f.write('kept')");
      expect(readFileSync(join(session.workspace, "note.txt"), "utf8")).toBe("kept");
      expect(await session.run("open('/workspace/note.txt').read()")).toBe("kept");
    },
    SLOW,
  );
});

describe("Python session store", () => {
  it(
    "continues after a restart from the same directory",
    async () => {
      const store = join(project.dir, "py-store");
      const first = open({ store });
      await first.run("import collections\nseen = collections.deque([1, 2])");
      await first.close();
      const second = open({ store });
      expect(await second.run("seen.append(3); list(seen)")).toBe("[1, 2, 3]");
    },
    SLOW,
  );

  it(
    "gives a clear error for a tampered state file, never a host crash",
    async () => {
      const store = join(project.dir, "py-tampered");
      const first = open({ store });
      await first.run("value = 7");
      await first.close();
      const file = join(store, "state.img");
      const saved = readFileSync(file);

      // Not an image at all.
      writeFileSync(file, "not an image");
      const garbage = await open({ store }).runCode("value");
      expect(garbage.error?.error_type).toBe("config_error");
      expect(garbage.error?.message).toMatch(/no valid state image/);

      // A valid frame whose Python facts were cut off.
      const image = decodeImage(new Uint8Array(saved));
      writeFileSync(
        file,
        encodeImage({ ...image, bytes: image.bytes.subarray(0, image.bytes.byteLength - 10) }),
      );
      const cut = await open({ store }).runCode("value");
      expect(cut.error?.error_type).toBe("config_error");
      expect(cut.error?.message).toMatch(/Python session's state image is not valid/);

      // Claims more memory than the call's ram.
      const bytes = new Uint8Array(image.bytes);
      const view = new DataView(bytes.buffer);
      const jsonLength = view.getUint32(bytes.byteLength - 4, true);
      const start = bytes.byteLength - 4 - jsonLength;
      const facts = JSON.parse(new TextDecoder().decode(bytes.subarray(start, start + jsonLength)));
      const json = new TextEncoder().encode(
        JSON.stringify({ ...facts, memoryBytes: 8192 * 65_536 }),
      );
      const grown = new Uint8Array(start + json.byteLength + 4);
      grown.set(bytes.subarray(0, start));
      grown.set(json, start);
      new DataView(grown.buffer).setUint32(start + json.byteLength, json.byteLength, true);
      writeFileSync(file, encodeImage({ ...image, bytes: grown }));
      const tooBig = await open({ store }).runCode("value");
      expect(tooBig.error?.error_type).toBe("memory_exceeded");

      // Memory overwritten: the sandbox it is copied into breaks, the host does not.
      const scrambled = new Uint8Array(image.bytes);
      for (let at = 0; at < start; at += 997) scrambled[at] = 0xa5;
      writeFileSync(file, encodeImage({ ...image, bytes: scrambled }));
      const broken = open({ store });
      const outcome = await broken.runCode("value");
      expect(outcome.success).toBe(false);
      await broken.reset();
      expect(await broken.run("1 + 1")).toBe("2");
    },
    SLOW,
  );
});
