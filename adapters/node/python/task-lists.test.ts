// A Python file's task list kept on disk: read once per text and build, signed, and ignored when
// altered. The CLI runs below are real: fresh processes, real interpreters.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeProject, runCapsule } from "../test/fixtures.ts";
import { taskListStore } from "./task-lists.ts";

const TIMEOUT = 240_000;
const LISTING = { tasks: [{ name: "main", options: { name: "main", ram: "64MB" } }] };

describe("taskListStore", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "capsule-task-lists-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const store = (keyFile = join(dir, "key", "cache-key"), onWarning?: (m: string) => void) =>
    taskListStore(join(dir, "cache"), { keyFile, ...(onWarning ? { onWarning } : {}) });

  it("answers a list for the same file name and text only", () => {
    const lists = store();
    expect(lists.get("a.py", "text")).toBeUndefined();
    lists.put("a.py", "text", LISTING);
    expect(store().get("a.py", "text")).toEqual(LISTING);
    expect(store().get("a.py", "text ")).toBeUndefined();
    expect(store().get("b.py", "text")).toBeUndefined();
  });

  it("ignores an entry altered, planted, moved from another file, or signed with another key", () => {
    const lists = store();
    const entries = () => new Set(readdirSync(join(dir, "cache")));
    const earlier = entries();
    lists.put("c.py", "one", LISTING);
    const ones = [...entries()].filter((name) => !earlier.has(name));
    lists.put("c.py", "two", LISTING);
    const twos = [...entries()].filter((name) => !earlier.has(name) && !ones.includes(name));
    expect([ones.length, twos.length]).toEqual([1, 1]);
    const files = [...ones, ...twos].map((name) => join(dir, "cache", name));
    const [first, second] = files;
    const before = new Map(files.map((file) => [file, readFileSync(file, "utf8")]));
    // More memory than the file asks for, with the MAC left as it was.
    for (const file of [first, second] as string[]) {
      const signed = JSON.parse(before.get(file) as string);
      signed.body = signed.body.replace("64MB", "4GB");
      writeFileSync(file, JSON.stringify(signed));
    }
    expect(store().get("c.py", "one")).toBeUndefined();
    expect(store().get("c.py", "two")).toBeUndefined();
    // One entry's valid file under the other's name.
    writeFileSync(second as string, before.get(first as string) as string);
    expect([store().get("c.py", "one"), store().get("c.py", "two")].filter(Boolean)).toHaveLength(
      0,
    );
    // Planted with a MAC of its own making, and signed under another key.
    writeFileSync(first as string, JSON.stringify({ mac: "00".repeat(32), body: "{}" }));
    expect(store().get("c.py", "one")).toBeUndefined();
    const other = join(dir, "other-key", "cache-key");
    store(other).put("c.py", "one", LISTING);
    expect(store().get("c.py", "one")).toBeUndefined();
    expect(store(other).get("c.py", "one")).toEqual(LISTING);
    // What the host would hold or wait on if it read it: a link to an endless device, a FIFO,
    // an entry past the size any list can have.
    rmSync(first as string);
    symlinkSync("/dev/zero", first as string);
    expect(store().get("c.py", "one")).toBeUndefined();
    rmSync(first as string);
    execFileSync("mkfifo", [first as string]);
    expect(store().get("c.py", "one")).toBeUndefined();
    rmSync(first as string);
    writeFileSync(first as string, Buffer.alloc(17 * 1024 * 1024, 32));
    expect(store().get("c.py", "one")).toBeUndefined();
  });

  it("keeps nothing, says why once, and never fails a run when its key is not this user's alone", () => {
    const keyFile = join(dir, "shared-key");
    writeFileSync(keyFile, "k".repeat(32));
    chmodSync(keyFile, 0o644);
    const warnings: string[] = [];
    const lists = store(keyFile, (message) => warnings.push(message));
    lists.put("d.py", "text", LISTING);
    expect(lists.get("d.py", "text")).toBeUndefined();
    lists.put("d.py", "text", LISTING);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(keyFile);
  });
});

describe("capsule run of a Python file read before", () => {
  let project: ReturnType<typeof makeProject>;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    project = makeProject();
    // A home of its own: the signing key is made there, not in the user's.
    env = { ...process.env, HOME: join(project.dir, "home"), NO_COLOR: "1" };
    project.write(
      "tasks.py",
      'from capsule import task\nprint("reading the file")\n\n@task(name="main", ram="64MB")\ndef main(mb="1"):\n    return len(bytearray(int(mb) * 1024 * 1024))\n',
    );
  });
  afterAll(() => project.cleanup());

  const topLevelRuns = (stdout: string) =>
    stdout.split("\n").filter((l) => l === "reading the file");

  it(
    "starts one interpreter instead of two, and reads the file again when its entry was altered",
    async () => {
      const first = await runCapsule(["run", "tasks.py"], {
        cwd: project.dir,
        env,
        deadlineMs: 120_000,
      });
      expect(first.code).toBe(0);
      // Its top level ran twice: once to read the tasks, once in the run.
      expect(topLevelRuns(first.stdout)).toHaveLength(2);
      const second = await runCapsule(["run", "tasks.py"], {
        cwd: project.dir,
        env,
        deadlineMs: 120_000,
      });
      expect(second.code).toBe(0);
      expect(topLevelRuns(second.stdout)).toHaveLength(1);
      expect(second.stdout).toContain('"result": 1048576');

      // An entry altered to ask for more memory than the file does is not believed.
      const cache = join(project.dir, ".capsule", "cache");
      const [entry] = readdirSync(cache).filter((name) => name.startsWith("python-tasks-"));
      const signed = JSON.parse(readFileSync(join(cache, entry as string), "utf8"));
      signed.body = signed.body.replace("64MB", "1GB");
      writeFileSync(join(cache, entry as string), JSON.stringify(signed));
      // 100 MB fits in 1 GB, not in the file's own 64 MB.
      const third = await runCapsule(["run", "tasks.py", "100"], {
        cwd: project.dir,
        env,
        deadlineMs: 120_000,
      });
      expect(topLevelRuns(third.stdout)).toHaveLength(2);
      expect(third.code).toBe(1);
      expect(third.stdout).toContain('"error_type": "memory_exceeded"');
    },
    TIMEOUT,
  );
});
