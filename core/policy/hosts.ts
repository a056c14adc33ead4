import { formatValue } from "../config/units.ts";
import { ConfigError } from "../errors.ts";
import { type CanonicalHost, canonicalHost } from "./addresses.ts";

/**
 * One allowedHosts entry, compiled. Names are lowercase ASCII (punycode for Unicode names), with
 * no trailing dot; addresses are in the form canonicalHost gives.
 */
export type AllowedHostRule =
  /** "*": every host. */
  | { kind: "any"; entry: string }
  /** "x.com": x.com itself and every subdomain at any depth. */
  | { kind: "domain"; domain: string; entry: string }
  /** "*.x.com": exactly one more label (a.x.com; not x.com, not a.b.x.com). */
  | { kind: "subdomain"; parent: string; entry: string }
  /** "api.*": "api." followed by at least one more label (api.x, api.x.y; not api). */
  | { kind: "prefix"; prefix: string; entry: string }
  /** "10.0.0.5", "[::1]": that address only, in any notation; never a name's subdomain. */
  | { kind: "address"; address: string; entry: string };

const ENTRY_HINT =
  'use a host name like "api.example.com" (itself and its subdomains), "*.example.com" (exactly one more label), "api.*" (api. and more labels), an IP address like "10.0.0.5" or "[::1]", or "*" (any host)';

const LABEL = /^[a-z0-9_-]{1,63}$/;

/** Validates allowedHosts entries; throws ConfigError naming the first bad entry and why. */
export function parseAllowedHosts(entries: unknown, option: string): AllowedHostRule[] {
  if (!Array.isArray(entries)) {
    throw new ConfigError(
      `${option}: ${formatValue(entries)} is not a list; each entry: ${ENTRY_HINT}`,
    );
  }
  return entries.map((entry: unknown, index) => {
    const rule = compileAllowedHost(entry);
    if (typeof rule === "string") {
      throw new ConfigError(`${option}[${index}]: ${formatValue(entry)} ${rule}; ${ENTRY_HINT}`);
    }
    return rule;
  });
}

/**
 * True when `host` (as `new URL(...).hostname` gives it; any case, a trailing dot, brackets
 * around IPv6 and Unicode are all fine) is allowed by one of the entries. Ports are not part of
 * matching. An IP address matches only an entry naming that same address, or "*". An invalid
 * entry matches nothing.
 */
export function matchAllowedHost(host: string, allowed: readonly string[]): boolean {
  const target = canonicalHost(host);
  if (target === null) return false;
  return allowed.some((entry) => {
    const rule = compileAllowedHost(entry);
    return typeof rule !== "string" && ruleMatches(rule, target);
  });
}

/** matchAllowedHost for entries already compiled by parseAllowedHosts. */
export function matchAllowedHostRules(host: string, rules: readonly AllowedHostRule[]): boolean {
  const target = canonicalHost(host);
  return target !== null && rules.some((rule) => ruleMatches(rule, target));
}

function ruleMatches(rule: AllowedHostRule, target: CanonicalHost): boolean {
  if (rule.kind === "any") return true;
  if (rule.kind === "address") return target.kind !== "name" && target.host === rule.address;
  if (target.kind !== "name") return false;
  const name = target.host;
  switch (rule.kind) {
    case "domain":
      return name === rule.domain || name.endsWith(`.${rule.domain}`);
    case "subdomain": {
      if (!name.endsWith(`.${rule.parent}`)) return false;
      const extra = name.slice(0, -rule.parent.length - 1);
      return extra !== "" && !extra.includes(".");
    }
    case "prefix":
      return name.startsWith(`${rule.prefix}.`) && name.length > rule.prefix.length + 1;
  }
}

/** The rule an entry stands for, or the reason it is refused (worded to follow the entry). */
function compileAllowedHost(entry: unknown): AllowedHostRule | string {
  if (typeof entry !== "string") return "is not a string";
  if (entry.trim() === "") return "is empty";
  if (/\s/.test(entry)) return "contains white space";
  if (entry.includes("://")) {
    return `has a scheme; give the host name only${suggestHost(entry)}`;
  }
  if (entry.includes("/")) return `has a path; give the host name only${suggestHost(entry)}`;
  if (entry.includes("@")) return "has user info; give the host name only";
  if (entry === "*") return { kind: "any", entry };
  const bracketedWithPort = /^(\[[^\]]*\]):\d*$/.exec(entry);
  if (bracketedWithPort) {
    return `has a port; ports are not part of matching, write "${bracketedWithPort[1]}"`;
  }
  if (entry.startsWith("[") || (entry.match(/:/g)?.length ?? 0) > 1) {
    const target = canonicalHost(entry);
    if (target === null) return "is not a valid IPv6 address";
    return { kind: "address", address: target.host, entry };
  }
  if (entry.includes(":")) {
    const [host = ""] = entry.split(":");
    return /:\d*$/.test(entry)
      ? `has a port; ports are not part of matching, write "${host}"`
      : 'has a ":" that is neither a port nor part of an IPv6 address';
  }
  const text = entry.endsWith(".") ? entry.slice(0, -1) : entry;
  if (text.startsWith("*.") && !text.slice(2).includes("*")) {
    const parent = canonicalName(text.slice(2));
    if (typeof parent !== "string") return parent.problem;
    return { kind: "subdomain", parent, entry };
  }
  if (text.endsWith(".*") && !text.slice(0, -2).includes("*")) {
    const prefix = canonicalName(text.slice(0, -2), { allowNumericEnd: true });
    if (typeof prefix !== "string") return prefix.problem;
    if (prefix.split(".").every((label) => /^[0-9]+$/.test(label))) {
      return "looks like an IP range; ranges are not supported, list each address";
    }
    return { kind: "prefix", prefix, entry };
  }
  if (text.includes("*")) {
    return 'has a "*" that is not a whole first or last label (write "*.example.com" or "api.*")';
  }
  const target = canonicalHost(text);
  if (target === null) return "is not a valid host name or IP address";
  if (target.kind !== "name") return { kind: "address", address: target.host, entry };
  const domain = canonicalName(text);
  if (typeof domain !== "string") return domain.problem;
  return { kind: "domain", domain, entry };
}

/** A host name part of an entry in canonical form; names ending in a number are IPv4 or nothing. */
function canonicalName(
  text: string,
  options: { allowNumericEnd?: boolean } = {},
): string | { problem: string } {
  // Checked as a host with a label appended, so a prefix like "10.0" is not read as an address.
  const probe = options.allowNumericEnd ? `${text}.x` : text;
  const target = canonicalHost(probe);
  if (target === null || target.kind !== "name") {
    return { problem: "is not a valid host name" };
  }
  const name = options.allowNumericEnd ? target.host.slice(0, -2) : target.host;
  const labels = name.split(".");
  if (!labels.every((label) => LABEL.test(label))) {
    return {
      problem:
        "is not a valid host name (each label is 1 to 63 letters, digits, hyphens or underscores)",
    };
  }
  if (name.length > 253) return { problem: "is longer than 253 characters" };
  return name;
}

function suggestHost(entry: string): string {
  try {
    const { hostname } = new URL(entry.includes("://") ? entry : `http://${entry}`);
    return hostname ? `, like "${hostname}"` : "";
  } catch {
    return "";
  }
}
