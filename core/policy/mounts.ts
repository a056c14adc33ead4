import type { FileMode } from "../config/options.ts";
import { formatValue } from "../config/units.ts";
import { ConfigError } from "../errors.ts";
import type { Grant } from "./paths.ts";
import { namesRuntimeState, pathNamesRuntimeState, RUNTIME_STATE_RULE } from "./runtime-state.ts";

/** A parsed `HOST_PATH[::GUEST_PATH][:ro|:rw]`. */
export interface MountSpec {
  /** The spec as given, for messages. */
  spec: string;
  /** As given; the host adapter resolves a relative one against its working directory. */
  hostPath: string;
  /** Absolute and normalised, in the guest namespace whose "/" is the project root. */
  guestPath: string;
  mode: FileMode;
}

const SPEC_HINT =
  'the form is HOST_PATH[::GUEST_PATH][:ro|:rw], like "./data", "./data:ro" or "/srv/datasets::/datasets:ro"';

/**
 * Parses a mount spec. The mode suffix is the text after the last ":" of the spec when that text
 * has no "/" (so a path holding ":" needs an explicit mode: "./a:b:rw"); without one the mount is
 * read-write. Without "::GUEST_PATH" a relative host path appears at the same relative place in
 * the guest ("./data" at "/data", as allowedFiles does); an absolute host path, or one with
 * "..", needs an explicit guest path. A relative guest path ("workspace") is taken from the guest
 * root ("/workspace"). A guest path may not contain "..".
 */
export function parseMount(spec: string, option = "mount"): MountSpec {
  const fail = (problem: string): never => {
    throw new ConfigError(`${option} ${formatValue(spec)}: ${problem}; ${SPEC_HINT}`);
  };
  if (typeof spec !== "string") {
    throw new ConfigError(`${option}: ${formatValue(spec)} is not a string; ${SPEC_HINT}`);
  }
  if (spec.trim() === "") fail("is empty");
  if (spec.includes("\0")) fail("contains a NUL byte");
  const separator = spec.indexOf("::");
  if (separator !== -1 && spec.indexOf("::", separator + 2) !== -1) {
    fail('has more than one "::"');
  }
  let hostPath = separator === -1 ? spec : spec.slice(0, separator);
  let guestText = separator === -1 ? null : spec.slice(separator + 2);
  if (guestText === "ro" || guestText === "rw") {
    const host = hostPath;
    fail(
      `"::${guestText}" reads as a guest path; for the mode write "${host}:${guestText}", for a guest path "${host}::/${guestText}"`,
    );
  }
  let mode: FileMode = "rw";
  const tail = guestText ?? hostPath;
  const modeMatch = /:([^:/]*)$/.exec(tail);
  if (modeMatch) {
    const token = modeMatch[1] ?? "";
    if (token !== "ro" && token !== "rw") {
      fail(
        token === ""
          ? 'ends with ":"; give a mode (":ro" or ":rw") or drop the ":"'
          : `has an unknown mode ":${token}"; use ":ro" (read-only) or ":rw" (read-write)`,
      );
    }
    mode = token as FileMode;
    const stripped = tail.slice(0, -token.length - 1);
    if (guestText === null) hostPath = stripped;
    else guestText = stripped;
  }
  if (hostPath === "") fail("has no host path");
  if (guestText === "") fail('has an empty guest path after "::"');
  const guestPath =
    guestText === null
      ? defaultGuestPath(hostPath, modeMatch ? `:${mode}` : "", fail)
      : explicitGuestPath(guestText, fail);
  // The host adapter checks the real path too (a symlink may lead into one).
  if (pathNamesRuntimeState(hostPath) || namesRuntimeState(guestPath.split("/"))) {
    throw new ConfigError(`${option} ${formatValue(spec)}: ${RUNTIME_STATE_RULE}`);
  }
  return { spec, hostPath, guestPath, mode };
}

/** The grant a mount gives, for mergeGrants. */
export function mountGrant(mount: MountSpec): Grant {
  return {
    guestPath: mount.guestPath,
    hostPath: mount.hostPath,
    mode: mount.mode,
    source: "mount",
  };
}

function defaultGuestPath(
  hostPath: string,
  modeSuffix: string,
  fail: (problem: string) => never,
): string {
  const suggestion = `${hostPath}::/${lastSegment(hostPath)}${modeSuffix}`;
  if (hostPath.startsWith("/") || /^[a-z]:[\\/]/i.test(hostPath) || hostPath.startsWith("~")) {
    return fail(`an absolute host path needs a guest path; write "${suggestion}"`);
  }
  const segments = hostPath.split("/").filter((segment) => segment !== "" && segment !== ".");
  if (segments.includes("..")) {
    return fail(`a host path with ".." needs a guest path; write "${suggestion}"`);
  }
  if (hostPath.includes("\\")) {
    return fail(`the host path has "\\"; give a guest path with "::"`);
  }
  return `/${segments.join("/")}`;
}

function explicitGuestPath(guestText: string, fail: (problem: string) => never): string {
  if (guestText.includes("\\")) return fail('the guest path has "\\"; guest paths use "/"');
  const segments = guestText.split("/").filter((segment) => segment !== "" && segment !== ".");
  if (segments.includes("..")) return fail('the guest path contains ".."');
  return `/${segments.join("/")}`;
}

function lastSegment(path: string): string {
  const segments = path.split(/[\\/]/).filter((segment) => !["", ".", ".."].includes(segment));
  return segments[segments.length - 1] ?? "data";
}
