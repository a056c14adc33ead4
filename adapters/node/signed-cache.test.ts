import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { buildSync } from "esbuild";
import { describe, expect, it } from "vitest";
import { findSetpriv } from "./setpriv.ts";
import { readSigned, trimCache, writeSigned } from "./signed-cache.ts";
import { makeProject } from "./test/fixtures.ts";

const key = randomBytes(32);
const diskKey = (n: number) => createHash("sha256").update(String(n)).digest("hex");
const MB = 1024 * 1024;

/** Writes entry `n` into `dir` with the given bounds, dated `minutesAgo` before now. */
function put(
  dir: string,
  n: number,
  minutesAgo: number,
  bounds = { entries: 100, bytes: 100 * MB },
) {
  const file = join(dir, `${diskKey(n)}.json`);
  writeSigned(dir, file, diskKey(n), key, { n, pad: "x".repeat(1000) }, bounds);
  const at = new Date(Date.now() - minutesAgo * 60_000);
  utimesSync(file, at, at);
  return file;
}

describe("the signed disk cache's bounds", () => {
  it("keeps the most recently used entries within the entry bound", () => {
    const project = makeProject();
    try {
      const dir = join(project.dir, "cache");
      for (let n = 0; n < 5; n++) put(dir, n, 100 - n * 10);
      // Entry 0 is the oldest written, but read now: it counts as used now.
      const oldest = join(dir, `${diskKey(0)}.json`);
      expect(readSigned(oldest, diskKey(0), key, MB)).toMatchObject({ n: 0 });
      expect(Date.now() - statSync(oldest).mtimeMs).toBeLessThan(60_000);
      put(dir, 5, 0, { entries: 3, bytes: 100 * MB });
      const left = readdirSync(dir).sort();
      expect(left).toEqual([0, 4, 5].map((n) => `${diskKey(n)}.json`).sort());
    } finally {
      project.cleanup();
    }
  });

  it("keeps the entries within the byte bound, the newest first", () => {
    const project = makeProject();
    try {
      const dir = join(project.dir, "cache");
      for (let n = 0; n < 4; n++) put(dir, n, 100 - n * 10);
      const size = statSync(join(dir, `${diskKey(0)}.json`)).size;
      put(dir, 4, 0, { entries: 100, bytes: 2 * size + 10 });
      expect(readdirSync(dir).sort()).toEqual([3, 4].map((n) => `${diskKey(n)}.json`).sort());
    } finally {
      project.cleanup();
    }
  });

  it("removes only what it writes: other files, folders and links' targets stay", () => {
    const project = makeProject();
    try {
      const dir = join(project.dir, "cache");
      mkdirSync(dir);
      const outside = join(project.dir, "precious.json");
      writeFileSync(outside, "{}");
      const old = new Date(Date.now() - 24 * 3_600_000);
      const others = ["notes.txt", "settings.json", `${diskKey(9)}.json.bak`];
      for (const name of others) {
        writeFileSync(join(dir, name), "keep");
        utimesSync(join(dir, name), old, old);
      }
      mkdirSync(join(dir, `${diskKey(8)}.json`));
      // A planted link under an entry's name is removed as a link; what it names stays.
      const link = join(dir, `${diskKey(7)}.json`);
      symlinkSync(outside, link);
      // A temp file left by a killed writer goes once stale; one being written stays.
      const stale = join(dir, `${diskKey(6)}.json.4242.${"a".repeat(12)}.tmp`);
      const fresh = join(dir, `${diskKey(6)}.json.4243.${"b".repeat(12)}.tmp`);
      writeFileSync(stale, "half");
      utimesSync(stale, old, old);
      writeFileSync(fresh, "half");
      put(dir, 1, 0, { entries: 1, bytes: 100 * MB });
      for (const name of others) expect(existsSync(join(dir, name))).toBe(true);
      expect(statSync(join(dir, `${diskKey(8)}.json`)).isDirectory()).toBe(true);
      expect(existsSync(outside)).toBe(true);
      expect(existsSync(link)).toBe(false);
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(fresh)).toBe(true);
      expect(existsSync(join(dir, `${diskKey(1)}.json`))).toBe(true);
    } finally {
      project.cleanup();
    }
  });

  it("trims Python task lists by the same rule, and a missing folder quietly", () => {
    const project = makeProject();
    try {
      const dir = join(project.dir, "cache");
      mkdirSync(dir);
      for (let n = 0; n < 3; n++) {
        const file = join(dir, `python-tasks-${diskKey(n)}.json`);
        writeFileSync(file, "{}");
        const at = new Date(Date.now() - (10 - n) * 60_000);
        utimesSync(file, at, at);
      }
      trimCache(dir, { entries: 1, bytes: MB });
      expect(readdirSync(dir)).toEqual([`python-tasks-${diskKey(2)}.json`]);
      expect(() => trimCache(join(project.dir, "missing"))).not.toThrow();
    } finally {
      project.cleanup();
    }
  });

  it("leaves an entry it cannot look at and does not throw: the write that called it succeeded", () => {
    const project = makeProject();
    try {
      // A folder that may be listed but not searched: listing works, every entry's lstat fails
      // with EACCES. Root passes such checks, so as root it runs as nobody through setpriv.
      const dir = join(project.dir, "cache");
      mkdirSync(dir);
      writeFileSync(join(dir, `${diskKey(1)}.json`), "{}");
      writeFileSync(join(dir, `${diskKey(2)}.json`), "{}");
      const script = join(project.dir, "trim.mjs");
      buildSync({
        stdin: {
          contents: `import { trimCache } from ${JSON.stringify(join(import.meta.dirname, "signed-cache.ts"))};
            trimCache(process.argv[2], { entries: 1, bytes: 1 << 20 });
            console.log("trimmed");`,
          resolveDir: import.meta.dirname,
          loader: "ts",
        },
        bundle: true,
        platform: "node",
        format: "esm",
        outfile: script,
        logLevel: "silent",
      });
      chmodSync(project.dir, 0o755);
      chmodSync(script, 0o644);
      const root = process.getuid?.() === 0;
      chmodSync(dir, root ? 0o744 : 0o444); // owner root: others may list only
      const setpriv = findSetpriv();
      if (root) expect(setpriv, "util-linux's setpriv, to run as nobody").not.toBeNull();
      const command = root
        ? [setpriv as string, "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath]
        : [process.execPath];
      const [file, ...args] = [...command, script, dir];
      // The check that the folder is really unsearchable for the child: without it the test
      // could pass by trimming normally.
      const probe = `try { require("fs").lstatSync(${JSON.stringify(join(dir, `${diskKey(1)}.json`))}); console.log("searchable") } catch (e) { console.log(e.code) }`;
      expect(
        execFileSync(file as string, [...args.slice(0, -2), "-e", probe], {
          encoding: "utf8",
        }).trim(),
      ).toBe("EACCES");
      expect(execFileSync(file as string, args, { encoding: "utf8" }).trim()).toBe("trimmed");
      chmodSync(dir, 0o755);
      expect(readdirSync(dir)).toHaveLength(2);
    } finally {
      project.cleanup();
    }
  });
});
