// capsuleTools() on Node, called as an agent framework calls it: the definitions as data, and
// handle(name, input) over the real runCode and Session.
import { afterAll, describe, expect, it } from "vitest";
import { capsuleTools } from "./index.ts";

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
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(tools.liveSessions).toBe(0);
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
});
