// Attacks on the Python child's boundary on Node: host IPC over Unix sockets, floods of the
// runtime's channel, a child the task ends itself, and host facts in the child's realm. Real
// Pyodide in real child processes, real Unix socket servers.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, shutdown } from "../index.ts";
import { packageRoot } from "../paths.ts";
import { descendants, stillRunningAfter } from "../test/processes.ts";
import { MAX_MESSAGE_BYTES, MessageReader } from "./protocol.ts";
import { permissionFlag, pythonIsolation } from "./runner.ts";

const TIMEOUT = 300_000;
let dir: string;
const servers: Server[] = [];
/** Where the test's Unix socket servers listen, by name. */
const sockets: Record<string, string> = {};
let reached = 0;

const listen = (path: string) =>
  new Promise<void>((resolve, reject) => {
    const server = createServer((connection) => {
      reached++;
      connection.end("HTTP/1.0 200 OK\r\ncontent-length: 7\r\n\r\nreached");
    });
    server.once("error", reject);
    server.listen(path, () => resolve());
    servers.push(server);
  });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "capsule-python-attacks-"));
  sockets.tempDir = join(dir, "service.sock");
  sockets.tmp = `/tmp/capsule-attack-${process.pid}.sock`;
  if (existsSync("/run")) sockets.run = `/run/capsule-attack-${process.pid}.sock`;
  sockets.abstract = `\0capsule-attack-${process.pid}`;
  for (const [name, path] of Object.entries(sockets)) {
    try {
      await listen(path);
    } catch {
      // /run may not be writable here; the others are enough to show the rule.
      delete sockets[name];
    }
  }
});

afterAll(async () => {
  await shutdown();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  rmSync(dir, { recursive: true, force: true });
});

const py = (code: string, extra: Record<string, unknown> = {}) =>
  run({ code, language: "py", cwd: dir, env: {}, ...extra });

/** A task whose main is `body`, with `js`, `json` and Node's fs at hand. */
const task = (body: string, options = "") =>
  `import js, json\nfrom capsule import task\n\n@task(name="main"${options})\ndef main():\n    fs = js.process.getBuiltinModule("fs")\n${body
    .trim()
    .split("\n")
    .map((line) => `    ${line}`)
    .join("\n")}\n`;

/** Tries each socket path by net.connect and http's socketPath, and by Python's socket module. */
const reachSockets = (paths: string[]) => `import js, json, socket
from pyodide.ffi import create_proxy
from capsule import task

def reach(kind, path):
    def executor(resolve, reject):
        try:
            if kind == "net":
                s = js.process.getBuiltinModule("net").connect(js.Object.fromEntries([["path", path]]))
                s.on("connect", create_proxy(lambda *_: resolve("reached")))
            else:
                options = js.Object.fromEntries([["socketPath", path], ["path", "/"]])
                s = js.process.getBuiltinModule("http").get(options, create_proxy(lambda r: resolve("reached")))
            s.on("error", create_proxy(lambda e: resolve("refused: " + str(e.code))))
        except BaseException as e:
            resolve("refused: " + type(e).__name__)
    return js.Promise.new(create_proxy(executor))

def python_socket(path):
    try:
        s = socket.socket(getattr(socket, "AF_UNIX", 1), socket.SOCK_STREAM)
        s.connect(path)
        return "reached"
    except BaseException as e:
        return "refused: " + type(e).__name__

@task(name="main")
async def main():
    out = {}
    for path in json.loads(${JSON.stringify(JSON.stringify(paths))}):
        out[path] = [await reach("net", path), await reach("http", path), python_socket(path)]
    return out
`;

describe("Python on Node: no host IPC", () => {
  it(
    "reaches no Unix socket in a temp dir, /tmp or /run, by net.connect, http socketPath or Python's socket",
    async () => {
      const paths = ["tempDir", "tmp", "run"].flatMap((name) =>
        sockets[name] ? [sockets[name] as string] : [],
      );
      expect(paths.length).toBeGreaterThanOrEqual(2);
      const before = reached;
      const envelope = await py(reachSockets(paths));
      expect(envelope.error).toBeNull();
      const result = envelope.result as Record<string, string[]>;
      if (pythonIsolation().hostIpcRefusedBy === "none") {
        // Declared, not hidden: nothing on this machine keeps the child from Unix sockets.
        expect(JSON.stringify(result)).toContain("reached");
        return;
      }
      for (const path of paths) {
        expect(result[path]).toEqual([
          expect.stringMatching(/^refused/),
          expect.stringMatching(/^refused/),
          expect.stringMatching(/^refused/),
        ]);
      }
      expect(reached).toBe(before);
    },
    TIMEOUT,
  );

  it(
    "reaches no abstract Unix socket of the host",
    async () => {
      const path = sockets.abstract as string;
      expect(path).toBeDefined();
      const before = reached;
      const envelope = await py(reachSockets([path]));
      expect(envelope.error).toBeNull();
      const result = envelope.result as Record<string, string[]>;
      if (pythonIsolation().namespaces || pythonIsolation().hostIpcRefusedBy !== "none") {
        expect(result[path]?.slice(0, 2)).toEqual([
          expect.stringMatching(/^refused/),
          expect.stringMatching(/^refused/),
        ]);
        expect(reached).toBe(before);
      }
    },
    TIMEOUT,
  );

  it("states plainly what keeps a Python task from host IPC on this machine and Node line", () => {
    const isolation = pythonIsolation();
    expect(["namespaces", "permission-model", "none"]).toContain(isolation.hostIpcRefusedBy);
    if (isolation.fileView === "interpreter-only") {
      expect(isolation.hostIpcRefusedBy).toBe("namespaces");
    }
    // Node 25 and later: the permission model refuses the network too, namespaces or not.
    const major = Number(process.versions.node.split(".")[0]);
    expect(isolation.permissionModelRefusesNetwork).toBe(major >= 25);
    if (!isolation.namespaces) {
      expect(isolation.hostIpcRefusedBy).toBe(major >= 25 ? "permission-model" : "none");
    }
    // Where this runs as root with unshare (the test machines), the strong layer is there.
    if (process.platform === "linux" && process.getuid?.() === 0) {
      expect(isolation.fileView).toBe("interpreter-only");
    }
  });

  it("starts the child with the permission flag its Node version knows", () => {
    expect(permissionFlag("20.20.2")).toBe("--experimental-permission");
    expect(permissionFlag("22.12.0")).toBe("--experimental-permission");
    expect(permissionFlag("22.13.0")).toBe("--permission");
    expect(permissionFlag("23.4.0")).toBe("--experimental-permission");
    expect(permissionFlag("23.5.0")).toBe("--permission");
    expect(permissionFlag("24.22.3")).toBe("--permission");
    expect(permissionFlag("26.12.1")).toBe("--permission");
  });
});

describe("Python on Node: floods of the runtime's channel", () => {
  it("bounds each message before parsing it, across chunks, and stops at the first one too large", () => {
    const lines: string[] = [];
    const tooLarge: string[] = [];
    const reader = new MessageReader(
      (tag, body) => lines.push(tag + body.toString()),
      (tag) => tooLarge.push(tag),
    );
    reader.push(Buffer.from('M{"a"'));
    reader.push(Buffer.from(':1}\nD{"b":2}\nM'));
    expect(lines).toEqual(['M{"a":1}', 'D{"b":2}']);
    const piece = Buffer.alloc(1024 * 1024, 120);
    for (let i = 0; i < 9 && !reader.stopped; i++) reader.push(piece);
    expect(tooLarge).toEqual(["M"]);
    expect(reader.stopped).toBe(true);
    reader.push(Buffer.from("\nM{}\n"));
    expect(lines).toHaveLength(2);
  });

  it(
    "ends a task that sends one message past the cap as task_error, before the host parses it",
    async () => {
      const envelope = await py(
        task(`fs.writeSync(3, "M" + "x" * (${MAX_MESSAGE_BYTES} + 1024 * 1024))\nreturn "sent"`),
      );
      expect(envelope.success).toBe(false);
      expect(envelope.error?.error_type).toBe("task_error");
      expect(envelope.error?.message).toContain("larger than 8 MiB");
    },
    TIMEOUT,
  );

  it(
    "ends a task whose outcome line is past its cap, or malformed, as task_error",
    async () => {
      const huge = await py(task(`fs.writeSync(3, "D" + "x" * (40 * 1024 * 1024))\nreturn 1`));
      expect(huge.error?.error_type).toBe("task_error");
      expect(huge.error?.message).toContain("an outcome larger than 33 MiB");
      const forged = await py(task(`fs.writeSync(3, 'D{"type": "done"}\\n')\nreturn 1`));
      expect(forged.error).toMatchObject({
        error_type: "task_error",
        message: "the Python process sent a malformed outcome",
      });
      // A malformed outcome and a well-formed one in one write arrive in one read: the first
      // ends the job, and the second is not believed.
      const forgedThenValid = await py(
        task(
          `fs.writeSync(3, 'D{"type": "done"}\\nD' + json.dumps({"type": "done", "outcomeJson": '{"ok": true, "value_json": "2"}', "fuelConsumed": 1}) + '\\n')
return 1`,
        ),
      );
      expect(forgedThenValid.error).toMatchObject({
        error_type: "task_error",
        message: "the Python process sent a malformed outcome",
      });
      // An outcome that claims more fuel than the budget, and an engine failure the task wrote
      // itself, are the task's failure: neither is believed, neither blames the runtime.
      const overBudget = await py(
        task(
          `fs.writeSync(3, 'D' + json.dumps({"type": "done", "outcomeJson": '{"ok": true, "value_json": "1"}', "fuelConsumed": 10 ** 12}) + '\\n')
return 1`,
          `, compute="LOW"`,
        ),
      );
      expect(overBudget.error?.error_type).toBe("task_error");
      expect(overBudget.error?.message).toContain("more than the task's budget");
      const failed = await py(
        task(`fs.writeSync(3, 'M{"type": "failed", "message": "made up"}\\n')
return 1`),
      );
      expect(failed.error).toMatchObject({
        error_type: "task_error",
        message: "the Python task's process failed: made up",
      });
    },
    TIMEOUT,
  );

  it(
    "sends a print() larger than the cap in pieces and truncates the log, as for JavaScript",
    async () => {
      let logged = 0;
      const envelope = await py(task(`print("z" * (20 * 1024 * 1024))\nreturn "printed"`), {
        onLog: (_level: string, text: string) => {
          logged += text.length;
        },
      });
      expect(envelope).toMatchObject({ success: true, result: "printed" });
      expect(logged).toBeLessThanOrEqual(1024 * 1024 + 200);
    },
    TIMEOUT,
  );

  it(
    "takes many medium messages one at a time, drops the log past its limit, and finishes",
    async () => {
      let logged = 0;
      const envelope = await py(
        task(`line = "M" + json.dumps({"type": "log", "level": "log", "text": "y" * (2 * 1024 * 1024)}) + "\\n"
for i in range(40):
    fs.writeSync(3, line)
return "flooded"`),
        {
          onLog: (_level: string, text: string) => {
            logged += text.length;
          },
        },
      );
      expect(envelope).toMatchObject({ success: true, result: "flooded" });
      expect(logged).toBeLessThanOrEqual(1024 * 1024 + 200);
    },
    TIMEOUT,
  );

  it(
    "ends a task that sends blocking requests without waiting for their replies",
    async () => {
      const envelope = await py(
        // One write, so the requests arrive together whatever the machine's load: the runtime
        // sees the second before it could have answered the first.
        task(`fs.writeSync(3, 'M{"type": "request", "request": {"op": "fs", "call": "readdir", "argsJson": "{}"}}\\n' * 50)
js.Atomics.wait(js.Int32Array.new(js.SharedArrayBuffer.new(4)), 0, 0, 2000)
return "kept going"`),
      );
      expect(envelope.error).toMatchObject({ error_type: "task_error" });
      expect(envelope.error?.message).toContain("before the runtime answered the last one");
    },
    TIMEOUT,
  );
});

describe("Python on Node: a child the task ends is the task's failure", () => {
  it(
    "reports process.exit and process.abort from the task's realm as task_error",
    async () => {
      const exited = await py(task(`js.process.exit(3)`));
      expect(exited.error?.error_type).toBe("task_error");
      expect(exited.error?.message).toContain("exit code 3");
      const aborted = await py(task(`js.process.abort()`));
      expect(aborted.error?.error_type).toBe("task_error");
      expect(aborted.error?.message).toMatch(/signal SIG/);
      // In its own process namespace the child is its init, which ignores its own SIGKILL; where
      // it is not, the signal ends it, and the task with it.
      const killed = await py(task(`js.process.kill(js.process.pid, "SIGKILL")`));
      expect(killed.error?.error_type ?? "task_error").toBe("task_error");
    },
    TIMEOUT,
  );

  it(
    "reports a child that runs out of memory in its own JavaScript realm as the task's failure",
    async () => {
      const envelope = await py(
        task(
          `js.process.getBuiltinModule("vm").runInNewContext("const kept = []; for (;;) kept.push(new Array(1e6).fill(1.5))")`,
          `, ram="64MB"`,
        ),
      );
      expect(envelope.success).toBe(false);
      expect(["memory_exceeded", "task_error"]).toContain(envelope.error?.error_type);
    },
    TIMEOUT,
  );
});

/**
 * Runs `file` with the CLI, kills the CLI (SIGKILL) once the task runs, and answers which of the
 * processes it had started still run 5 s later.
 */
async function killHostWhileRunning(file: string, tmp: string): Promise<number[]> {
  const cli = spawn(
    process.execPath,
    [join(packageRoot, "bin", "capsule.mjs"), "run", file, "--verbose"],
    {
      cwd: dir,
      env: { ...process.env, TMPDIR: tmp, NO_COLOR: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  cli.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  for (let waited = 0; !stderr.includes("main: running"); waited += 50) {
    if (waited > 120_000 || cli.exitCode !== null) {
      cli.kill("SIGKILL");
      throw new Error(`${file} did not start running; stderr:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // The task is past its first statements: in a busy loop, a sleep, or a wait.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const started = descendants(cli.pid as number);
  cli.kill("SIGKILL");
  const left = await stillRunningAfter(started, 5_000);
  for (const pid of left) process.kill(pid, "SIGKILL");
  return left;
}

describe("Python on Node: a task does not outlive its host", () => {
  it(
    "ends the task's processes within 5 s of the host's death: busy, asleep, or with process.exit replaced and waiting in JavaScript",
    async () => {
      const tmp = mkdtempSync(join(dir, "tmp-"));
      const files = {
        "busy.py": `from capsule import task\n\n@task(name="main", compute="HIGH", timeout="10m")\ndef main():\n    while True:\n        pass\n`,
        "asleep.py": `import time\nfrom capsule import task\n\n@task(name="main", timeout="10m")\ndef main():\n    while True:\n        time.sleep(100)\n`,
        // Holds the child's realm: the child's own check cannot end it, only the kernel.
        "hostile.py": `import js\nfrom pyodide.ffi import create_proxy\nfrom capsule import task\n\n@task(name="main", timeout="10m")\ndef main():\n    js.process.exit = create_proxy(lambda *args: None)\n    js.Atomics.wait(js.Int32Array.new(js.SharedArrayBuffer.new(4)), 0, 0)\n`,
      };
      for (const [name, code] of Object.entries(files)) writeFileSync(join(dir, name), code);
      const left = await Promise.all(
        Object.keys(files).map(async (file) => [file, await killHostWhileRunning(file, tmp)]),
      );
      expect(Object.fromEntries(left)).toEqual({
        "busy.py": [],
        "asleep.py": [],
        "hostile.py": [],
      });
      // The children's root is mounted on one kept directory per user: no process leaves its own.
      const roots = readdirSync(tmp).filter((name) => name.startsWith("capsule-python-root"));
      expect(roots).toEqual(
        pythonIsolation().fileView === "interpreter-only"
          ? [`capsule-python-root-${process.getuid?.()}`]
          : [],
      );
    },
    TIMEOUT,
  );
});

describe("Python on Node: no host facts", () => {
  it(
    "shows the task a neutral realm: cwd /, no argv, no host name, no host paths",
    async () => {
      const envelope = await py(`import js, os, socket, sys
from capsule import task

def attempt(f):
    try:
        return f()
    except BaseException as e:
        return "refused: " + type(e).__name__

@task(name="main")
def main():
    p = js.process
    node_os = p.getBuiltinModule("os")
    return {
        "cwd": p.cwd(),
        "argv": list(p.argv),
        "execArgv": list(p.execArgv),
        "execPath": p.execPath,
        "argv0": p.argv0,
        "title": p.title,
        "report": attempt(lambda: p.report.getReport().header.host),
        "hostname": node_os.hostname(),
        "homedir": node_os.homedir(),
        "user": attempt(lambda: node_os.userInfo().username),
        "interfaces": list(js.Object.keys(node_os.networkInterfaces())),
        "uname": os.uname().nodename,
        "gethostname": socket.gethostname(),
        "getcwd": os.getcwd(),
        "stack": js.Error.new("where").stack,
        "stack_in_new_realm": p.getBuiltinModule("vm").runInNewContext("new Error('where').stack"),
        "cmdline": attempt(lambda: p.getBuiltinModule("fs").readFileSync("/proc/self/cmdline", "utf8")),
        "env": list(js.Object.keys(p.env)),
        "sys_executable": sys.executable,
        "sys_argv": sys.argv,
    }
`);
      expect(envelope.error).toBeNull();
      const facts = envelope.result as Record<string, unknown>;
      expect(facts).toMatchObject({
        cwd: "/",
        argv: [],
        execArgv: [],
        execPath: "/capsule/node",
        title: "node",
        report: "refused: AttributeError",
        hostname: "capsule",
        homedir: "/",
        user: "nobody",
        interfaces: [],
        getcwd: "/",
        cmdline: "refused: JsException",
        env: [],
      });
      const text = JSON.stringify(facts);
      // Nothing names the host's install, the project or the machine.
      expect(text).not.toContain(packageRoot);
      expect(text).not.toContain(dir);
      expect(text).not.toContain(process.execPath);
      for (const key of ["hostname", "uname", "gethostname"]) {
        expect(facts[key]).not.toBe(hostname());
      }
      if (pythonIsolation().fileView === "interpreter-only") {
        expect(facts.argv0).toBe("/capsule/node");
        expect(facts.stack).toContain("/capsule/");
      }
    },
    TIMEOUT,
  );
});
