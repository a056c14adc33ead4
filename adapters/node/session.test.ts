import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runJavaScript } from "./agent.ts";
import { Session } from "./session.ts";
import { makeProject } from "./test/fixtures.ts";

const project = makeProject();
const sessions: Session[] = [];
afterAll(async () => {
  for (const session of sessions) await session.close();
  project.cleanup();
});

function open(options: ConstructorParameters<typeof Session>[1] = {}): Session {
  const session = new Session("javascript", { cwd: project.dir, ...options });
  sessions.push(session);
  return session;
}

describe("Session state", () => {
  it("keeps const, let, var, functions, closures, class instances and imported modules", async () => {
    const session = open();
    await session.run(
      [
        'import path from "node:path";',
        "const base = 40; let step = 1; var label = 'n';",
        "function add(a) { return a + base }",
        "const next = (() => { let n = 0; return () => (n += step) })();",
        "class Box { constructor(v) { this.v = v } get twice() { return this.v * 2 } }",
        "const box = new Box(21);",
        "const bag = new Map([[1, { deep: [1, 2] }]]);",
      ].join("\n"),
    );
    expect(await session.run("add(2)")).toBe("42");
    expect(await session.run("next(); next()")).toBe("2");
    expect(await session.run("step = 10; next()")).toBe("12");
    expect(await session.run("box.twice + bag.get(1).deep.length")).toBe("44");
    expect(await session.run("box instanceof Box && path.join('a', label)")).toBe("a/n");
  });

  it("runs every call in a fresh sandbox with its own limits", async () => {
    const session = open({ compute: "LOW" });
    await session.run(
      "let total = 0; const spin = (n) => { for (let i = 0; i < n; i++) total++; return total }",
    );
    // Each call has the whole LOW budget: many calls add up to far more than one budget.
    for (let i = 0; i < 4; i++) {
      const envelope = await session.runCode("spin(5e4)");
      expect(envelope.success).toBe(true);
      expect(envelope.execution.fuel_consumed).toBeLessThan(100_000_000);
    }
    expect(await session.run("total")).toBe("200000");
  });

  it("leaves the state as it was when a call fails (exception, fuel, timeout, memory)", async () => {
    const session = open({ ram: "64MB", timeout: "2s" });
    await session.run("let n = 1; const kept = [1]");
    const failures = [
      ["n = 100; kept.push(2); globalThis.leaked = 1; throw new Error('no')", "task_error"],
      ["n = 200; kept.push(3); for (;;) {}", "fuel_exhausted"],
      ["n = 300; await new Promise((r) => setTimeout(r, 60_000))", "timeout"],
    ] as const;
    for (const [code, errorType] of failures) {
      const envelope = await session.runCode(code);
      expect(envelope.error?.error_type).toBe(errorType);
      expect(await session.run("[n, kept.length, typeof leaked].join()")).toBe("1,1,undefined");
    }
    const roomy = open({ ram: "32MB", compute: "HIGH" });
    await roomy.run("let n = 1");
    const hog = await roomy.runCode(
      "n = 400; const hog = []; for (;;) hog.push('x'.repeat(65536) + hog.length)",
    );
    expect(hog.error?.error_type).toBe("memory_exceeded");
    expect(await roomy.run("[n, typeof hog].join()")).toBe("1,undefined");
  });

  it("fork() gives an independent copy; reset() forgets the state", async () => {
    const session = open();
    await session.run("const seen = []; seen.push('a')");
    const copy = await session.fork();
    sessions.push(copy);
    await session.run("seen.push('original')");
    await copy.run("seen.push('copy')");
    expect(await session.run("seen.join()")).toBe("a,original");
    expect(await copy.run("seen.join()")).toBe("a,copy");
    await session.reset();
    expect(await session.run("typeof seen")).toBe("undefined");
    expect(await copy.run("seen.length")).toBe("2");
  });

  it("serializes calls made at once, in order", async () => {
    const session = open();
    await session.run("let log = []");
    const results = await Promise.all(
      [1, 2, 3, 4].map((i) => session.run(`await null; log.push(${i}); log.join()`)),
    );
    expect(results).toEqual(["1", "1,2", "1,2,3", "1,2,3,4"]);
  });

  it("survives a restart with a store directory, workspace included", async () => {
    const store = join(project.dir, "stores", "durable");
    const first = new Session("javascript", { cwd: project.dir, store });
    await first.run("const greet = (who) => 'hello ' + who; var count = 41");
    await first.run("import fs from 'node:fs'; fs.writeFileSync('/workspace/note.txt', 'kept')");
    await first.close();
    expect(existsSync(join(store, "state.img"))).toBe(true);
    const second = open({ store });
    expect(await second.run("count += 1; greet(count)")).toBe("hello 42");
    expect(
      await second.run("import fs from 'node:fs'; fs.readFileSync('workspace/note.txt', 'utf8')"),
    ).toBe("kept");
    const third = open({ store });
    expect(await third.run("count")).toBe("42");
  });

  it("refuses a state image larger than the call's ram, and one from another build", async () => {
    const store = join(project.dir, "stores", "big");
    const big = new Session("javascript", {
      cwd: project.dir,
      store,
      ram: "128MB",
      compute: "HIGH",
    });
    await big.run(
      "const blob = []; for (let i = 0; i < 600; i++) blob.push('y'.repeat(65536) + i); blob.length",
    );
    await big.close();
    const small = open({ store, ram: "32MB" });
    const refused = await small.runCode("blob.length");
    expect(refused.error?.error_type).toBe("memory_exceeded");
    writeFileSync(join(store, "state.img"), "not an image");
    const broken = open({ store });
    expect((await broken.runCode("1")).error?.error_type).toBe("config_error");
    await broken.reset();
    expect(await broken.run("1 + 1")).toBe("2");
  });
});

describe("Session store", () => {
  it("is never read or written through a link, and the guest cannot reach it", async () => {
    const store = join(project.dir, "stores", "linked");
    mkdirSync(store, { recursive: true });
    writeFileSync(join(project.dir, "outside.img"), "x");
    symlinkSync(join(project.dir, "outside.img"), join(store, "state.img"));
    const linked = open({ store });
    expect((await linked.runCode("1")).error?.message).toMatch(/not a regular file/);
    const linkedWorkspace = join(project.dir, "stores", "linked-workspace");
    mkdirSync(linkedWorkspace, { recursive: true });
    symlinkSync("/etc", join(linkedWorkspace, "workspace"));
    expect(() => new Session("javascript", { store: linkedWorkspace })).toThrow(/not a directory/);
    // The guest sees only the workspace: the store's image is not reachable from a cell.
    const session = open({ store: join(project.dir, "stores", "guarded") });
    await session.run("var x = 1");
    const probe = await session.runCode(
      "import fs from 'node:fs'; fs.readFileSync('/workspace/../state.img')",
    );
    expect(probe.success).toBe(false);
    expect(await session.run("x")).toBe("1");
  });

  it("keeps a cell that breaks the runtime's own guest code to its own session", async () => {
    const broken = open();
    const healthy = open();
    await broken.run("var y = 1");
    await broken.runCode(
      "delete globalThis.__capsule; Object.prototype.hasOwnProperty = () => false; 1",
    );
    await healthy.run("var y = 2");
    expect(await healthy.run("y + Object.prototype.hasOwnProperty.call({ a: 1 }, 'a')")).toBe("3");
    await broken.reset();
    expect(await broken.run("typeof y")).toBe("undefined");
  });
});

describe("Session isolation", () => {
  it("does not leak state into another session or into a stateless call", async () => {
    const a = open();
    const b = open();
    await a.run(
      "globalThis.secret = 's3cr3t'; var alsoSecret = 1; Object.prototype.polluted = true",
    );
    expect(await a.run("secret + ({}).polluted")).toBe("s3cr3ttrue");
    expect(await b.run("[typeof secret, typeof alsoSecret, ({}).polluted].join()")).toBe(
      "undefined,undefined,",
    );
    expect(await runJavaScript("[typeof secret, typeof alsoSecret, ({}).polluted].join()")).toBe(
      "undefined,undefined,",
    );
  });

  it("gives each session its own workspace", async () => {
    const a = open();
    const b = open();
    await a.run("import fs from 'node:fs'; fs.writeFileSync('/workspace/a.txt', 'A')");
    expect(await b.run("import fs from 'node:fs'; fs.readdirSync('/workspace').join()")).toBe("");
    expect(a.workspace).not.toBe(b.workspace);
  });
});

describe("Session workspace", () => {
  it("imports, exports and deletes files as Capsule does", async () => {
    mkdirSync(join(project.dir, "input", "nested"), { recursive: true });
    writeFileSync(join(project.dir, "input", "data.csv"), "a,b\n1,2\n");
    writeFileSync(join(project.dir, "input", "nested", "x.txt"), "x");
    const session = open();
    expect(await session.importFile("input/data.csv", "data.csv")).toBe("Imported data.csv");
    expect(await session.importFile("input", "dir/input")).toBe("Imported dir/input");
    expect(
      await session.run(
        "import fs from 'node:fs'; fs.writeFileSync('workspace/out.txt', fs.readFileSync('workspace/data.csv', 'utf8').toUpperCase()); fs.readFileSync('workspace/dir/input/nested/x.txt', 'utf8')",
      ),
    ).toBe("x");
    expect(await session.exportFile("out.txt", "results/out.txt")).toBe(
      "exported at results/out.txt",
    );
    expect(readFileSync(join(project.dir, "results", "out.txt"), "utf8")).toBe("A,B\n1,2\n");
    expect(await session.deleteFile("data.csv")).toBe("Deleted data.csv");
    expect(await session.run("import fs from 'node:fs'; fs.existsSync('workspace/data.csv')")).toBe(
      "false",
    );
  });

  it("refuses paths that leave the workspace or the host directory, and links out", async () => {
    const session = open();
    writeFileSync(join(project.dir, "inside.txt"), "in");
    await expect(session.importFile("../../etc/passwd", "p")).rejects.toThrow(/leads outside/);
    await expect(session.importFile("/etc/passwd", "p")).rejects.toThrow(/must be relative/);
    await expect(session.importFile("inside.txt", "../escape.txt")).rejects.toThrow(
      /leads outside/,
    );
    await session.run("import fs from 'node:fs'; fs.writeFileSync('workspace/x', 'x')");
    await expect(session.exportFile("x", "/tmp/escape.txt")).rejects.toThrow(/must be relative/);
    await expect(session.exportFile("x", "../escape.txt")).rejects.toThrow(/leads outside/);
    await expect(session.deleteFile("..")).rejects.toThrow(/leads outside/);
    // A link planted in the workspace (as if a cell had made one) leads nowhere.
    symlinkSync("/etc", join(session.workspace, "etc"));
    await expect(session.exportFile("etc/hostname", "stolen.txt")).rejects.toThrow(/link out/);
    await expect(session.importFile("inside.txt", "etc/planted")).rejects.toThrow(/link out/);
    await expect(session.exportFile("etc", "stolen.txt")).rejects.toThrow(/symbolic link/);
    expect(await session.deleteFile("etc")).toBe("Deleted etc");
    expect(existsSync("/etc/hostname") || existsSync("/etc/passwd")).toBe(true);
  });

  it("bounds the workspace's disk use", async () => {
    const session = open({ diskBytes: 1024 * 1024, compute: "MEDIUM" });
    const envelope = await session.runCode(
      "import fs from 'node:fs'; for (let i = 0; i < 64; i++) fs.writeFileSync('workspace/f' + i, new Uint8Array(65536))",
    );
    expect(envelope.success).toBe(false);
    expect(envelope.error?.message).toMatch(/quota|ENOSPC|EDQUOT/i);
    writeFileSync(join(project.dir, "large.bin"), new Uint8Array(2 * 1024 * 1024));
    await expect(session.importFile("large.bin", "large.bin")).rejects.toThrow(/does not fit/);
  });
});
