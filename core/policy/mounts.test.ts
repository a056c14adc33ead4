import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../errors.ts";
import { configError } from "../testing/config-error.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import { mountGrant, parseMount } from "./mounts.ts";

describe("parseMount", () => {
  it.each([
    ["./data", "./data", "/data", "rw"],
    ["./data:ro", "./data", "/data", "ro"],
    ["./data:rw", "./data", "/data", "rw"],
    ["data/raw/", "data/raw/", "/data/raw", "rw"],
    [".", ".", "/", "rw"],
    ["./data::workspace", "./data", "/workspace", "rw"],
    ["./data::workspace:ro", "./data", "/workspace", "ro"],
    ["./data::/work//space/.:ro", "./data", "/work/space", "ro"],
    ["/srv/datasets::/datasets:ro", "/srv/datasets", "/datasets", "ro"],
    ["../shared::/shared", "../shared", "/shared", "rw"],
    ["./a:b:rw", "./a:b", "/a:b", "rw"],
    ["./a:b/c", "./a:b/c", "/a:b/c", "rw"],
    ["./data::/", "./data", "/", "rw"],
  ])("reads %j", (spec, hostPath, guestPath, mode) => {
    expect(parseMount(spec)).toEqual({ spec, hostPath, guestPath, mode });
  });

  it.each([
    ["", "is empty"],
    ["  ", "is empty"],
    [":ro", "has no host path"],
    ["::/data", "has no host path"],
    ["./data::", 'has an empty guest path after "::"'],
    ["./data:::ro", 'has an empty guest path after "::"'],
    ["./data:", 'ends with ":"; give a mode'],
    ["./data:rx", 'has an unknown mode ":rx"; use ":ro" (read-only) or ":rw" (read-write)'],
    ["./data::/x:RO", 'has an unknown mode ":RO"'],
    [
      "./data::ro",
      '"::ro" reads as a guest path; for the mode write "./data:ro", for a guest path "./data::/ro"',
    ],
    ["./a::b::c", 'has more than one "::"'],
    ["./data::../etc", 'the guest path contains ".."'],
    ["./data::/x/../../etc", 'the guest path contains ".."'],
    ["./data::a\\b", 'the guest path has "\\"'],
    ["/srv/data", 'an absolute host path needs a guest path; write "/srv/data::/data"'],
    ["/srv/data:ro", 'an absolute host path needs a guest path; write "/srv/data::/data:ro"'],
    ["../shared", 'a host path with ".." needs a guest path; write "../shared::/shared"'],
    ["da\0ta", "contains a NUL byte"],
  ])("refuses %j", (spec, problem) => {
    const message = configError(() => parseMount(spec, "--mount")).message;
    expect(message).toContain(`--mount ${JSON.stringify(spec)}: ${problem}`);
    expect(message).toContain("HOST_PATH[::GUEST_PATH][:ro|:rw]");
  });

  it("gives a grant the merge understands", () => {
    expect(mountGrant(parseMount("/srv/m::/models:ro"))).toEqual({
      guestPath: "/models",
      hostPath: "/srv/m",
      mode: "ro",
      source: "mount",
    });
  });

  it("always yields an absolute guest path without . or .. segments, or a ConfigError", () => {
    const part = fc.string({
      unit: fc.constantFrom("a", ".", "/", ":", "r", "o", "w"),
      maxLength: 12,
    });
    fc.assert(
      fc.property(part, (spec) => {
        let mount: ReturnType<typeof parseMount>;
        try {
          mount = parseMount(spec);
        } catch (error) {
          expect(error).toBeInstanceOf(ConfigError);
          return;
        }
        expect(mount.guestPath.startsWith("/")).toBe(true);
        const segments = mount.guestPath.split("/").slice(1);
        if (mount.guestPath !== "/") {
          for (const segment of segments) expect(["", ".", ".."]).not.toContain(segment);
        }
        expect(["ro", "rw"]).toContain(mount.mode);
        expect(mount.hostPath).not.toBe("");
      }),
      { numRuns: fuzzRuns(1000) },
    );
  });
});
