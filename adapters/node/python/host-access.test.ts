// Python tasks reach files, the network and each other only through the runtime, under the same
// policy as JavaScript tasks: real Pyodide in real child processes, real files in a temp
// project, a real HTTP server on 127.0.0.1.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LifecycleEvent } from "../index.ts";
import { run, shutdown } from "../index.ts";

const TIMEOUT = 180_000;
let project: string;
let outside: string;
let server: Server;
let origin: string;

beforeAll(async () => {
  project = mkdtempSync(join(tmpdir(), "capsule-python-host-"));
  outside = mkdtempSync(join(tmpdir(), "capsule-python-outside-"));
  mkdirSync(join(project, "data"));
  writeFileSync(join(project, "data", "in.txt"), "line one\nline two\n");
  writeFileSync(join(project, "secret.txt"), "not granted");
  writeFileSync(join(outside, "shared.txt"), "mounted text");
  server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      response.setHeader("x-echo-method", request.method ?? "");
      response.end(`${request.method} ${request.url} ${body}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await shutdown();
  await new Promise((resolve) => server.close(resolve));
  rmSync(project, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const py = (code: string, extra: Record<string, unknown> = {}) =>
  run({ code, language: "py", cwd: project, env: {}, ...extra });

describe("Python tasks: files, network, clock and sub-tasks through the runtime", () => {
  it(
    "uses open(), os and pathlib inside allowed_files, and is refused everywhere else",
    async () => {
      const envelope = await py(`import os, pathlib
from capsule import task

@task(name="main", allowed_files=["./data"])
def main():
    out = {}
    with open("data/in.txt") as f:
        out["read"] = f.readlines()
    out["pathlib"] = pathlib.Path("/data/in.txt").read_text().split()[0]
    with open("./data/out.txt", "w") as f:
        f.write("written by python")
    with open("data/out.txt", "a") as f:
        f.write("!")
    os.makedirs("data/sub/deeper")
    os.rename("data/out.txt", "data/sub/moved.txt")
    with open("data/sub/moved.txt", "rb") as f:
        f.seek(-1, 2)
        out["last_byte"] = f.read().decode()
    out["listing"] = sorted(os.listdir("data"))
    out["size"] = os.path.getsize("data/sub/moved.txt")
    with open("data/gone.txt", "w") as f:
        f.write("x")
    os.remove("data/gone.txt")
    refused = []
    for path in ["secret.txt", "/secret.txt", "data/../secret.txt", "/etc/passwd"]:
        try:
            open(path).read()
            refused.append("read " + path)
        except OSError as error:
            refused.append(type(error).__name__)
    out["refused"] = refused
    return out
`);
      expect(envelope.error).toBeNull();
      expect(envelope.result).toEqual({
        read: ["line one\n", "line two\n"],
        pathlib: "line",
        last_byte: "!",
        listing: ["in.txt", "sub"],
        size: 18,
        refused: [
          "FileNotFoundError",
          "FileNotFoundError",
          "FileNotFoundError",
          "FileNotFoundError",
        ],
      });
      expect(readFileSync(join(project, "data", "sub", "moved.txt"), "utf8")).toBe(
        "written by python!",
      );
      expect(existsSync(join(project, "data", "gone.txt"))).toBe(false);
      expect(readFileSync(join(project, "secret.txt"), "utf8")).toBe("not granted");
    },
    TIMEOUT,
  );

  it(
    "reads a read-only mount, is refused writing to it with the policy's reason, and refuses a grant over the interpreter's own directories",
    async () => {
      const mounted = await py(`def main():\n    return open("/shared/shared.txt").read()\n`, {
        mounts: [`${outside}::/shared:ro`],
      });
      expect(mounted).toMatchObject({ success: true, result: "mounted text" });
      const write = await py(
        `def main():\n    with open("/shared/new.txt", "w") as f:\n        f.write("no")\n`,
        { mounts: [`${outside}::/shared:ro`] },
      );
      expect(write.error?.error_type).toBe("task_error");
      expect(write.error?.message).toContain("OSError: [Errno 69] Read-only file system");
      expect(write.error?.message).toContain("The runtime refused it:");
      expect(write.error?.message).toContain("/shared/new.txt");
      expect(existsSync(join(outside, "new.txt"))).toBe(false);
      mkdirSync(join(project, "lib"), { recursive: true });
      const reserved = await py(
        `from capsule import task\n\n@task(name="main", allowed_files=["./lib"])\ndef main():\n    return 1\n`,
      );
      expect(reserved.error?.error_type).toBe("config_error");
      expect(reserved.error?.message).toContain(`allowed_files entry "./lib"`);
      expect(reserved.error?.message).toContain("/lib");
      // The whole project over the interpreter's root was an internal_error once.
      const wholeProject = await py(
        `from capsule import task\n\n@task(name="main", allowed_files=["."])\ndef main():\n    return 1\n`,
      );
      expect(wholeProject.error?.error_type).toBe("config_error");
      expect(wholeProject.error?.message).toContain(`allowed_files entry "."`);
      expect(wholeProject.error?.message).toContain(`"./data"`);
    },
    TIMEOUT,
  );

  it(
    "fetches through allowed_hosts with urllib.request and capsule.fetch, records the requests, and refuses other hosts",
    async () => {
      const envelope = await py(`import urllib.request, urllib.error
import capsule
from capsule import task

@task(name="main", allowed_hosts=["127.0.0.1"])
def main():
    with urllib.request.urlopen("${origin}/via-urllib") as response:
        first = [response.status, response.read().decode(), response.headers["x-echo-method"]]
    posted = capsule.fetch("${origin}/via-fetch", method="POST", body="payload")
    refused = []
    for url in ["http://example.com/", "http://localhost:1/", "http://169.254.169.254/latest"]:
        try:
            urllib.request.urlopen(url)
            refused.append("reached " + url)
        except PermissionError as error:
            refused.append("PermissionError")
    return {"urllib": first, "fetch": [posted["status"], posted["body"].decode()], "refused": refused}
`);
      expect(envelope.error).toBeNull();
      expect(envelope.result).toEqual({
        urllib: [200, "GET /via-urllib ", "GET"],
        fetch: [200, "POST /via-fetch payload"],
        refused: ["PermissionError", "PermissionError", "PermissionError"],
      });
      const recorded = envelope.execution.host_requests.map((r) => [r.method, r.status]);
      expect(recorded.slice(0, 2)).toEqual([
        ["GET", 200],
        ["POST", 200],
      ]);
      expect(envelope.execution.host_requests).toHaveLength(5);
      const none = await py(`import capsule\n\ndef main():\n    capsule.fetch("${origin}/")\n`);
      expect(none.error?.message).toContain("PermissionError");
      expect(none.error?.message).toContain("not in allowed_hosts");
      // The record says it in the task's own spelling too.
      const reasons = none.execution.host_requests.map((r) => r.reason ?? "");
      expect(reasons).toHaveLength(1);
      expect(reasons[0]).toContain("not in allowed_hosts");
      expect(reasons[0]).not.toContain("allowedHosts");
    },
    TIMEOUT,
  );

  it(
    "runs asyncio sub-tasks at the same time, each in its own sandbox, and reports lifecycle events",
    async () => {
      // "waiter" can only finish if "writer" runs while it waits: run one after the other, the
      // waiter would give up after its 100 sleeps.
      const events: LifecycleEvent[] = [];
      const envelope = await py(
        `import asyncio, os, time
from capsule import task

@task(name="waiter", allowed_files=["./data"])
async def waiter():
    for step in range(100):
        if os.path.exists("data/flag.txt"):
            return "saw the flag after %d sleeps" % step
        time.sleep(0.1)
    return "gave up"

@task(name="writer", allowed_files=["./data"])
async def writer():
    with open("data/flag.txt", "w") as f:
        f.write("up")
    return "wrote"

@task(name="main")
async def main():
    results = await asyncio.gather(waiter(), writer())
    return [r["result"] for r in results]
`,
        { onEvent: (event: LifecycleEvent) => events.push(event) },
      );
      expect(envelope.error).toBeNull();
      const [waited, wrote] = envelope.result as string[];
      expect(wrote).toBe("wrote");
      expect(waited).toMatch(/^saw the flag after \d+ sleeps$/);
      const main = events.filter((e) => e.task === "main").map((e) => e.type);
      expect(main).toEqual(["created", "running", "completed"]);
      const mainId = events.find((e) => e.task === "main")?.id;
      const children = events.filter((e) => e.type === "completed" && e.depth === 1);
      expect(children.map((e) => e.task).sort()).toEqual(["waiter", "writer"]);
      expect(children.every((e) => e.parentId === mainId)).toBe(true);
      rmSync(join(project, "data", "flag.txt"), { force: true });
    },
    TIMEOUT,
  );

  it(
    "stops a run and its sub-tasks' processes when the caller aborts",
    async () => {
      const controller = new AbortController();
      const started = Date.now();
      rmSync(join(project, "data", "started.txt"), { force: true });
      const pending = py(
        `import asyncio, time
from capsule import task

@task(name="late_writer", allowed_files=["./data"])
async def late_writer():
    with open("data/started.txt", "w") as f:
        f.write("running")
    time.sleep(3)
    with open("data/late.txt", "w") as f:
        f.write("should not exist")

@task(name="main")
async def main():
    await asyncio.gather(late_writer())
`,
        { signal: controller.signal },
      );
      // Aborted once the sub-task is surely running.
      const startedFile = join(project, "data", "started.txt");
      while (!existsSync(startedFile) && Date.now() - started < 60_000) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      controller.abort();
      const aborted = Date.now();
      const envelope = await pending;
      expect(envelope.error).toMatchObject({
        error_type: "timeout",
        message: "the task was cancelled by its caller",
      });
      // Stopped, not waited for: well before the sub-task's 3 s sleep would have ended.
      expect(Date.now() - aborted).toBeLessThan(2_500);
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      expect(existsSync(join(project, "data", "late.txt"))).toBe(false);
      rmSync(startedFile);
    },
    TIMEOUT,
  );

  it(
    "gives the task a clock that moves with its work and its sleeps, so loops on the clock spend the same fuel every run",
    async () => {
      const clocked = `import asyncio, time
from capsule import task

@task(name="main")
async def main():
    start = time.monotonic()
    spins = 0
    while time.monotonic() < start + 0.05:
        spins += 1
    before_sleep = time.monotonic()
    time.sleep(0.25)
    slept = time.monotonic() - before_sleep
    loop = asyncio.get_running_loop()
    before_timer = loop.time()
    await asyncio.sleep(0.2)
    timer = loop.time() - before_timer
    return {"spins": spins, "slept": slept >= 0.25 and slept < 0.26, "timer": timer >= 0.2 and timer < 0.21}
`;
      const first = await py(clocked);
      const second = await py(clocked);
      expect(first.error).toBeNull();
      expect(first.result).toMatchObject({ slept: true, timer: true });
      expect((first.result as { spins: number }).spins).toBeGreaterThan(0);
      expect(second.result).toEqual(first.result);
      expect(second.execution.fuel_consumed).toBe(first.execution.fuel_consumed);
      // The wall clock starts at the real time (its digits, and so a task that formats it, vary).
      const wall = await py(
        `import datetime, time\n\ndef main():\n    return abs(time.time() - datetime.datetime.now().timestamp()) < 1 and abs(time.time() - ${Date.now() / 1000}) < 120\n`,
      );
      expect(wall.result).toBe(true);
    },
    TIMEOUT,
  );

  it(
    "charges bulk memory work by its size and retries a failing task with events for each attempt",
    async () => {
      const small = await py(`def main():\n    return len("x" * 10)\n`);
      const large = await py(`def main():\n    return len("x" * 10_000_000)\n`);
      expect(large.result).toBe(10_000_000);
      expect(large.execution.fuel_consumed - small.execution.fuel_consumed).toBeGreaterThan(
        10_000_000,
      );
      const events: LifecycleEvent[] = [];
      const retried = await py(
        `from capsule import task\n\n@task(name="main", max_retries=2)\ndef main():\n    raise RuntimeError("always")\n`,
        { onEvent: (event: LifecycleEvent) => events.push(event) },
      );
      expect(retried.execution.retries).toBe(2);
      expect(events.map((e) => e.type)).toEqual([
        "created",
        "running",
        "retrying",
        "running",
        "retrying",
        "running",
        "failed",
      ]);
    },
    TIMEOUT,
  );
});
