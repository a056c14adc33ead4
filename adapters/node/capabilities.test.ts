import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, shutdown } from "./index.ts";
import { makeProject, taskSource } from "./test/fixtures.ts";

// End to end through run(): task options and mounts granting files, hosts and variables, with
// the real Node host underneath. Each capability's own attack suite sits beside its host module
// (files.test.ts, network.test.ts) and policy (core/policy/*.test.ts).

const project = makeProject();
const outside = makeProject();
let server: Server;
let origin = "";
let hits = 0;

beforeAll(async () => {
  mkdirSync(join(project.dir, "data"));
  mkdirSync(join(project.dir, "out"));
  mkdirSync(join(project.dir, "shared"));
  writeFileSync(join(project.dir, "data", "input.txt"), "hello from the host");
  writeFileSync(join(project.dir, "shared", "note.txt"), "mounted");
  writeFileSync(join(outside.dir, "secret.txt"), "do not read");
  symlinkSync(outside.dir, join(project.dir, "data", "escape"));
  server = createServer((request, response) => {
    hits++;
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks);
      response.setHeader("content-type", "application/octet-stream");
      response.setHeader("x-method", request.method ?? "");
      response.end(Buffer.concat([Buffer.from([0, 255]), body]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  project.cleanup();
  outside.cleanup();
  await new Promise((resolve) => server.close(resolve));
  await shutdown();
});

function runTask(source: string, extra: Parameters<typeof run>[0] = {}) {
  return run({ code: taskSource(source), language: "ts", cwd: project.dir, threads: 0, ...extra });
}

describe("files", () => {
  it("reads and writes inside allowedFiles, with Node's fs API", async () => {
    const envelope = await runTask(`
      import fs from "node:fs/promises";
      import { readFileSync } from "fs";
      export const main = task({ name: "main", allowedFiles: ["./data", "./out"] }, async () => {
        const text = await fs.readFile("./data/input.txt", "utf8");
        await fs.writeFile("./out/result.txt", text.toUpperCase());
        return readFileSync("out/result.txt", "utf8");
      });`);
    expect(envelope.error).toBe(null);
    expect(envelope.result).toBe("HELLO FROM THE HOST");
    expect(readFileSync(join(project.dir, "out", "result.txt"), "utf8")).toBe(
      "HELLO FROM THE HOST",
    );
  });

  it("refuses paths outside the grants with EACCES the task can catch", async () => {
    const envelope = await runTask(`
      import { readFileSync } from "node:fs";
      export const main = task({ name: "main", allowedFiles: ["./data"] }, () => {
        const codes: string[] = [];
        for (const path of ["/etc/passwd", "./data/../package.json", "data/escape/secret.txt"]) {
          try { readFileSync(path, "utf8"); codes.push("read!"); } catch (e) { codes.push((e as { code: string }).code + " " + (e as Error).message); }
        }
        return codes;
      });`);
    const codes = envelope.result as string[];
    expect(codes).toHaveLength(3);
    for (const line of codes) expect(line).toMatch(/^EACCES/);
    expect(JSON.stringify(envelope)).not.toContain(outside.dir);
    expect(JSON.stringify(envelope)).not.toContain(project.dir);
  });

  it("ends the task with permission_denied when a refusal is not caught", async () => {
    const envelope = await runTask(`
      import { readFileSync } from "node:fs";
      export const main = task({ name: "main", allowedFiles: ["./data"] }, () => readFileSync("/out/x", "utf8"));`);
    expect(envelope.error?.error_type).toBe("permission_denied");
  });

  it("keeps read-only entries read-only (EROFS) and the file untouched", async () => {
    const envelope = await runTask(`
      import { writeFileSync } from "node:fs";
      export const main = task({ name: "main", allowedFiles: [{ path: "./data", mode: "read-only" }] }, () => {
        try { writeFileSync("data/input.txt", "overwritten"); return "wrote"; } catch (e) { return (e as { code: string }).code; }
      });`);
    expect(envelope.result).toBe("EROFS");
    expect(readFileSync(join(project.dir, "data", "input.txt"), "utf8")).toBe(
      "hello from the host",
    );
  });

  it("refuses a missing, absolute or escaping allowedFiles entry as config_error", async () => {
    symlinkSync(outside.dir, join(project.dir, "looks-local"));
    for (const entry of [
      `"./missing"`,
      `"/etc"`,
      `"../"`,
      `"./looks-local"`,
      `"./data/input.txt"`,
    ]) {
      const envelope = await runTask(
        `export const main = task({ name: "main", allowedFiles: [${entry}] }, () => 1);`,
      );
      expect([entry, envelope.error?.error_type]).toEqual([entry, "config_error"]);
    }
  });

  it("refuses a read-only entry nested inside a writable one (it could not be enforced)", async () => {
    mkdirSync(join(project.dir, "out", "sealed"), { recursive: true });
    const envelope = await runTask(
      `export const main = task({ name: "main", allowedFiles: ["./out", { path: "./out/sealed", mode: "ro" }] }, () => 1);`,
    );
    expect(envelope.error?.error_type).toBe("config_error");
    expect(envelope.error?.message).toMatch(/read-only/);
  });

  it("passes mounts on to sub-tasks, but not allowedFiles", async () => {
    const envelope = await runTask(
      `import { readFileSync, existsSync } from "node:fs";
      export const child = task({ name: "child" }, () => ({
        mounted: readFileSync("/shared/note.txt", "utf8"),
        parentsData: (() => { try { return readFileSync("/data/input.txt", "utf8"); } catch (e) { return (e as { code: string }).code; } })(),
      }));
      export const main = task({ name: "main", allowedFiles: ["./data"] }, async () => (await child()).result);`,
      { mounts: ["./shared:ro"] },
    );
    expect(envelope.error).toBe(null);
    expect(envelope.result).toEqual({ mounted: "mounted", parentsData: "EACCES" });
  });

  it("leaves no trace outside the grants after an escape attempt through a guest symlink", async () => {
    const envelope = await runTask(`
      import fs from "node:fs";
      export const main = task({ name: "main", allowedFiles: ["./out"] }, () => {
        const codes: string[] = [];
        try { fs.symlinkSync("/etc", "out/link"); codes.push("linked"); } catch (e) { codes.push((e as { code: string }).code); }
        try { fs.writeFileSync("out/link/pwned", "x"); codes.push("wrote"); } catch (e) { codes.push((e as { code: string }).code); }
        return codes;
      });`);
    expect(envelope.result).not.toContain("wrote");
    expect(existsSync("/etc/pwned")).toBe(false);
  });
});

describe("network", () => {
  it("fetches from a listed host with binary bodies both ways, recorded in host_requests", async () => {
    const envelope = await runTask(
      `
      export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async (origin: string) => {
        const sent = new Uint8Array(256).map((_, i) => i);
        const response = await fetch(origin + "/echo", { method: "POST", body: sent });
        const bytes = new Uint8Array(await response.arrayBuffer());
        return { status: response.status, method: response.headers.get("x-method"), length: bytes.length, first: bytes[0], second: bytes[1], last: bytes[257] };
      });`,
      { args: [origin] },
    );
    expect(envelope.error).toBe(null);
    expect(envelope.result).toEqual({
      status: 200,
      method: "POST",
      length: 258,
      first: 0,
      second: 255,
      last: 255,
    });
    expect(envelope.execution.host_requests).toHaveLength(1);
    expect(envelope.execution.host_requests[0]).toMatchObject({ method: "POST", status: 200 });
  });

  it("denies unlisted hosts without connecting; the task can catch the TypeError", async () => {
    const before = hits;
    const envelope = await runTask(
      `
      export const main = task({ name: "main", allowedHosts: ["api.example.com"] }, async (origin: string) => {
        try { await fetch(origin); return "fetched"; } catch (e) { return (e as Error).name + ": " + (e as Error).message; }
      });`,
      { args: [origin] },
    );
    expect(envelope.result).toMatch(/^TypeError: fetch failed/);
    expect(hits).toBe(before);
    expect(envelope.execution.host_requests[0]).toMatchObject({ status: null });
    expect(envelope.execution.host_requests[0]?.reason).toBeTruthy();
  });

  it("ends the task with permission_denied when a denied fetch is not caught", async () => {
    const envelope = await runTask(
      `export const main = task({ name: "main" }, async (origin: string) => (await fetch(origin)).status);`,
      { args: [origin] },
    );
    expect(envelope.error?.error_type).toBe("permission_denied");
  });

  it("refuses a loopback address under * unless it is listed literally", async () => {
    const envelope = await runTask(
      `export const main = task({ name: "main", allowedHosts: ["*"] }, async (origin: string) => {
        try { await fetch(origin); return "fetched"; } catch (e) { return (e as Error).message; } });`,
      { args: [origin] },
    );
    expect(envelope.result).toMatch(/loopback/);
  });
});

describe("environment", () => {
  it("shows exactly the listed variables that exist, nothing else", async () => {
    const envelope = await runTask(
      `export const main = task({ name: "main", envVariables: ["API_KEY", "MISSING"] }, () => ({ ...process.env }));`,
      { env: { API_KEY: "k-123", PATH: "/usr/bin", HOME: "/root", OTHER: "x" } },
    );
    expect(envelope.result).toEqual({ API_KEY: "k-123" });
  });

  it("shows no variables by default", async () => {
    const envelope = await runTask(
      `export const main = task({ name: "main" }, () => Object.keys(process.env));`,
    );
    expect(envelope.result).toEqual([]);
  });
});
