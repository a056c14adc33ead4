import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { configError } from "../testing/config-error.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import { parseMount } from "./mounts.ts";
import { type Grant, grantsFromAllowedFiles, isPolicyDenial, resolveGuestPath } from "./paths.ts";
import { RUNTIME_STATE_DIR } from "./runtime-state.ts";

const wholeProject: Grant[] = [
  { guestPath: "/", hostPath: "/project", mode: "rw", source: "allowedFiles" },
];

describe("the runtime's own state (.capsule)", () => {
  it.each([
    "/.capsule",
    "/.capsule/cache/entry.json",
    ".capsule/cache",
    "./sub/.capsule",
    "/data/../.capsule/cache",
    "/.capsule/../.capsule/x",
  ])("is out of reach of a guest path %j, even under a grant of the whole project", (guest) => {
    for (const access of ["read", "write"] as const) {
      const resolved = resolveGuestPath(guest, "/", wholeProject, access);
      expect(resolved).toEqual({
        denied: "EACCES",
        reason: expect.stringContaining(`"${RUNTIME_STATE_DIR}" holds the runtime's own state`),
      });
    }
  });

  it("leaves names that only look like it alone", () => {
    for (const guest of ["/.capsules", "/capsule", "/x.capsule", "/.capsule.bak/x"]) {
      expect(isPolicyDenial(resolveGuestPath(guest, "/", wholeProject, "write"))).toBe(false);
    }
  });

  it("refuses any path text whose resolved names include it", () => {
    const name = fc.constantFrom("a", ".", "..", ".capsule", "", "b.c");
    fc.assert(
      fc.property(fc.array(name, { maxLength: 6 }), (names) => {
        const guest = `/${names.join("/")}`;
        const resolved = resolveGuestPath(guest, "/", wholeProject, "read");
        const segments: string[] = [];
        for (const segment of names) {
          if (segment === "..") segments.pop();
          else if (segment !== "" && segment !== ".") segments.push(segment);
        }
        expect(isPolicyDenial(resolved)).toBe(segments.includes(".capsule"));
      }),
      { numRuns: fuzzRuns(500) },
    );
  });

  it.each([
    ".capsule",
    "./.capsule/cache",
    "data/../.capsule",
    "sub/.capsule",
  ])("cannot be granted by allowedFiles %j", (entry) => {
    const { message } = configError(() =>
      grantsFromAllowedFiles([{ path: entry, mode: "ro" }], "/project"),
    );
    expect(message).toContain(`allowedFiles[0]: "${entry}"`);
    expect(message).toContain('".capsule" holds the runtime\'s own state');
  });

  it.each([
    "./.capsule",
    "./.capsule:ro",
    "./.capsule/cache::/cache:rw",
    "/home/user/.capsule::/keys:ro",
    "./data::/.capsule",
    "./data::/x/.capsule/y:ro",
  ])("cannot be mounted: %j", (spec) => {
    const { message } = configError(() => parseMount(spec, "mounts[0]"));
    expect(message).toContain(`mounts[0] "${spec}"`);
    expect(message).toContain('".capsule" holds the runtime\'s own state');
  });
});
