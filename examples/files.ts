import fs from "node:fs/promises";
import { task } from "@capsule-run/sdk";

// Files are reachable only inside the directories a task lists, relative to the project root
// (run from the repository root). The writer gets its own grant; main's does not pass on.
export const restrictedWriter = task(
  { name: "restricted_writer", allowedFiles: ["./examples/output"] },
  async (text: string) => {
    await fs.writeFile("./examples/output/result.txt", text);
    return text.length;
  },
);

export const main = task(
  { name: "main", allowedFiles: [{ path: "./examples/data", mode: "read-only" }] },
  async () => {
    const input = await fs.readFile("./examples/data/input.txt", "utf8");
    const words = input.split(/\s+/).filter(Boolean).length;
    const written = await restrictedWriter(input.toUpperCase());

    // Outside the grants: refused with Node's own error codes, which ordinary code can handle.
    const refused: Record<string, string> = {};
    for (const path of ["/etc/passwd", "./examples/data/../../package.json"]) {
      try {
        await fs.readFile(path, "utf8");
      } catch (error) {
        refused[path] = (error as NodeJS.ErrnoException).code ?? String(error);
      }
    }
    try {
      await fs.writeFile("./examples/data/input.txt", "overwritten?");
    } catch (error) {
      refused["write to read-only ./examples/data"] = (error as NodeJS.ErrnoException).code ?? "";
    }
    return { words, written: written.result, refused };
  },
);
