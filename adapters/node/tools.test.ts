// capsuleTools() on Node, called as an agent framework calls it: the definitions as data, and
// handle(name, input) over the real runCode and Session.
import { afterAll, describe, expect, it, vi } from "vitest";
import { capsuleTools, Session } from "./index.ts";

const open: { close(): Promise<void> }[] = [];
const make = (options: Parameters<typeof capsuleTools>[0] = {}) => {
  const tools = capsuleTools(options);
  open.push(tools);
  return tools;
};

afterAll(async () => {
  await Promise.all(open.map((tools) => tools.close()));
});

describe("capsuleTools()", () => {
  it("gives each tool as exactly name, description and inputSchema (what every API takes)", () => {
    const { tools } = make();
    for (const tool of tools) {
      expect(Object.keys(tool).sort()).toEqual(["description", "inputSchema", "name"]);
      expect(JSON.parse(JSON.stringify(tool))).toEqual(tool);
    }
    expect(tools[0]).toMatchObject({
      name: "execute_javascript",
      inputSchema: {
        type: "object",
        properties: { code: { type: "string" }, session_id: { type: "string" } },
        required: ["code"],
        additionalProperties: false,
      },
    });
  });

  it("states the limits and grants in the description", () => {
    const [tool] = make({
      compute: "MEDIUM",
      ram: "64MB",
      allowedHosts: ["api.example.com"],
    }).tools;
    expect(tool?.description).toContain("Each call gets MEDIUM compute, 64MB of memory and 30s.");
    expect(tool?.description).toContain("Network access (fetch) only to api.example.com.");
  });

  it("refuses bad options when made, naming the option and the value", () => {
    expect(() => capsuleTools({ ram: "lots" })).toThrow(/ram: "lots" is not a valid size/);
    expect(() => capsuleTools({ compute: "ULTRA" })).toThrow(/compute: "ULTRA"/);
    expect(() => capsuleTools({ allowedHosts: ["*.*"] })).toThrow(/allowedHosts\[0\]/);
    expect(() => capsuleTools({ maxSessions: -1 })).toThrow(/maxSessions: -1/);
    expect(() => capsuleTools({ sessionIdle: "soon" })).toThrow(/sessionIdle: "soon"/);
    expect(() => capsuleTools({ languages: ["ruby" as "python"] })).toThrow(
      /languages: "ruby" is not a language/,
    );
    expect(() => capsuleTools({ tiemout: "1s" } as never)).toThrow(/unknown option "tiemout"/);
  });

  it("never throws from handle: odd inputs are isError results naming the value", async () => {
    const { handle } = make();
    for (const input of [null, [], "1 + 1", 7]) {
      const result = await handle("execute_javascript", input);
      expect(result.isError).toBe(true);
      expect(result.text).toMatch(/the input must be an object like \{"code": "1 \+ 1"\}, got /);
      expect(result.envelope).toBeUndefined();
    }
    const nullSession = await handle("execute_javascript", { code: "6 * 7", session_id: null });
    expect(nullSession).toMatchObject({ text: "42", isError: false });
  });

  it("passes console output to the call's onLog and the tools' onLog as it happens", async () => {
    const seen: string[] = [];
    const { handle } = make({
      onLog: (level, text, call) =>
        seen.push(`${call.tool}/${call.sessionId ?? "-"} ${level} ${text}`),
    });
    const mine: string[] = [];
    await handle(
      "execute_javascript",
      { code: 'console.log("a"); console.error("b")', session_id: "logs" },
      { onLog: (level, text) => mine.push(`${level} ${text}`) },
    );
    expect(mine).toEqual(["log a", "error b"]);
    expect(seen).toEqual(["execute_javascript/logs log a", "execute_javascript/logs error b"]);
  });

  it("runs the calls of one session one after another, in order", async () => {
    const { handle } = make();
    const code = "var n = (typeof n === 'number' ? n : 0) + 1; n";
    const results = await Promise.all(
      [1, 2, 3].map(() => handle("execute_javascript", { code, session_id: "queue" })),
    );
    expect(results.map((result) => result.text)).toEqual(["1", "2", "3"]);
  });

  it("closes a session idle longer than sessionIdle, and a later call starts afresh", async () => {
    const tools = make({ sessionIdle: "300ms" });
    await tools.handle("execute_javascript", { code: "var kept = 'yes'", session_id: "idle" });
    expect(tools.liveSessions).toBe(1);
    await vi.waitFor(() => expect(tools.liveSessions).toBe(0), { timeout: 10_000 });
    const after = await tools.handle("execute_javascript", {
      code: "typeof kept",
      session_id: "idle",
    });
    expect(after.text).toBe("undefined");
  });

  it("close() ends every session; maxSessions 0 turns session_id off", async () => {
    const tools = make();
    await tools.handle("execute_javascript", { code: "var a = 1", session_id: "x" });
    await tools.handle("execute_javascript", { code: "var a = 2", session_id: "y" });
    expect(tools.liveSessions).toBe(2);
    await tools.close();
    expect(tools.liveSessions).toBe(0);
    const off = make({ maxSessions: 0 });
    expect(off.tools[0]?.inputSchema.properties).not.toHaveProperty("session_id");
    const refused = await off.handle("execute_javascript", { code: "1", session_id: "x" });
    expect(refused.isError).toBe(true);
    expect(refused.text).toMatch(/sessions are turned off here \(maxSessions 0\)/);
  });

  it("keeps a session through a call longer than its idle time, and counts idle time from the call's start and end", async () => {
    const tools = make({ sessionIdle: "1s" });
    await tools.handle("execute_javascript", { code: "var kept = 'yes'", session_id: "long" });
    // A call that outlasts the idle time: the session is not closed under it.
    const slow = await tools.handle("execute_javascript", {
      code: "await new Promise((r) => setTimeout(r, 1500)); kept",
      session_id: "long",
    });
    expect(slow.text).toBe("yes");
    // Calls closer together than the idle time keep it open (250 ms apart, well inside 1 s even
    // on a loaded machine).
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const again = await tools.handle("execute_javascript", { code: "kept", session_id: "long" });
      expect(again.text).toBe("yes");
    }
    expect(tools.liveSessions).toBe(1);
    await vi.waitFor(() => expect(tools.liveSessions).toBe(0), { timeout: 10_000 });
  });

  it("forks a session with fork_from: the copy starts with its state, then each goes its own way", async () => {
    const tools = make();
    const schema = tools.tools[0]?.inputSchema.properties;
    expect(schema?.fork_from).toMatchObject({ type: "string" });
    expect(tools.tools[0]?.description).toContain("fork_from copies an open session");
    await tools.handle("execute_javascript", {
      code: "let items = ['a']; function describe() { return items.join('+') }",
      session_id: "A",
    });
    const forked = await tools.handle("execute_javascript", {
      code: "items.push('b'); describe()",
      session_id: "B",
      fork_from: "A",
    });
    expect(forked).toMatchObject({ text: "a+b", isError: false });
    expect(tools.liveSessions).toBe(2);
    await tools.handle("execute_javascript", {
      code: "items.push('changed in A')",
      session_id: "A",
    });
    const inA = await tools.handle("execute_javascript", { code: "describe()", session_id: "A" });
    const inB = await tools.handle("execute_javascript", { code: "describe()", session_id: "B" });
    expect(inA.text).toBe("a+changed in A");
    expect(inB.text).toBe("a+b");
  });

  it("refuses a bad fork, naming the bad value", async () => {
    const tools = make({ maxSessions: 2 });
    await tools.handle("execute_javascript", { code: "var x = 1", session_id: "src" });
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { code: "x", session_id: "copy", fork_from: "nope" },
        /fork_from "nope" names no open JavaScript session/,
      ],
      [{ code: "x", fork_from: "src" }, /"fork_from" "src" needs a "session_id" too/],
      [
        { code: "x", session_id: "src", fork_from: "src" },
        /"fork_from" and "session_id" are both "src"/,
      ],
      [
        { code: "x", session_id: "copy", fork_from: "bad id!" },
        /"fork_from" must be 1 to 128 letters.*got "bad id!"/,
      ],
      [{ code: "x", session_id: "copy", fork_from: 7 }, /"fork_from" must be .*got 7/],
      [
        { code: "x", session_id: "src", fork_from: "copy1" },
        /session_id "src" is already open, and fork_from copies into a new session/,
      ],
    ];
    for (const [input, message] of cases) {
      const result = await tools.handle("execute_javascript", input);
      expect(result.isError, JSON.stringify(input)).toBe(true);
      expect(result.text).toMatch(message);
    }
    expect(tools.liveSessions).toBe(1);
    // A fork is a session: with maxSessions 2, the second copy is refused.
    const first = await tools.handle("execute_javascript", {
      code: "x + 1",
      session_id: "copy1",
      fork_from: "src",
    });
    expect(first.text).toBe("2");
    const already = await tools.handle("execute_javascript", {
      code: "x",
      session_id: "copy1",
      fork_from: "src",
    });
    expect(already.text).toMatch(
      /session_id "copy1" is already open, and fork_from copies into a new session/,
    );
    const second = await tools.handle("execute_javascript", {
      code: "x",
      session_id: "copy2",
      fork_from: "src",
    });
    expect(second.isError).toBe(true);
    expect(second.text).toMatch(
      /session_id "copy2" would open a new session, but 2 are open \(the limit\)/,
    );
    const off = make({ maxSessions: 0 });
    const refused = await off.handle("execute_javascript", {
      code: "1",
      session_id: "b",
      fork_from: "a",
    });
    expect(refused.text).toMatch(/fork_from "a" was given, but sessions are turned off here/);
  });

  it("bounds what sessions hold together: a model filling sessions is refused, the others still work", async () => {
    const budget = Session.imageBudget;
    const total = budget.totalBytes;
    const before = budget.heldBytes;
    budget.totalBytes = before + 128 * 2 ** 20;
    try {
      const tools = make({ ram: "64MB" });
      const texts: string[] = [];
      for (let i = 0; i < 5; i++) {
        const result = await tools.handle("execute_javascript", {
          code: `const hoard = new Uint8Array(40e6).fill(${i + 1}); hoard.length`,
          session_id: `s${i}`,
        });
        texts.push(result.isError ? result.text : "kept");
        expect(budget.heldBytes).toBeLessThanOrEqual(budget.totalBytes);
      }
      expect(texts.slice(0, 3)).toEqual(["kept", "kept", "kept"]);
      expect(texts[3]).toMatch(
        /^memory_exceeded: session_id "s3": the session's state after this call was not kept: its state of \d+(\.\d)? MiB does not fit in the \d+(\.\d)? MiB the session images of this process may hold together/,
      );
      // A fork of a full session shares its image; its first call needs room of its own.
      const copy = await tools.handle("execute_javascript", {
        code: "hoard[0]",
        session_id: "copy",
        fork_from: "s0",
      });
      expect(copy.text).toMatch(/^memory_exceeded: session_id "copy": /);
      // Sessions kept before still run (s0 now shares its image with the copy, so not that one).
      const first = await tools.handle("execute_javascript", {
        code: "hoard[0]",
        session_id: "s2",
      });
      expect(first.text).toBe("3");
      await tools.close();
      expect(budget.heldBytes).toBe(before);
    } finally {
      budget.totalBytes = total;
    }
  });
});
