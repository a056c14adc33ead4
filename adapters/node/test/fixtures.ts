import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A temporary project directory for task files; removed by `cleanup`. */
export function makeProject(): {
  dir: string;
  write: (name: string, source: string) => string;
  cleanup: () => void;
} {
  const dir = mkdtempSync(join(tmpdir(), "capsule-test-"));
  return {
    dir,
    write(name, source) {
      const path = join(dir, name);
      writeFileSync(path, source);
      return path;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Task source with the SDK import already in place. */
export function taskSource(body: string): string {
  return `import { task } from "@capsule-run/sdk";\n${body}\n`;
}
