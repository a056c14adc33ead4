import { formatValue } from "../config/units.ts";

/**
 * What a destination address is. Everything but "public" is refused unless the task names the
 * host or address exactly in allowedHosts.
 */
export type AddressClass =
  | "public"
  | "loopback"
  | "private"
  | "link-local"
  | "cgnat"
  | "metadata"
  | "unspecified"
  | "multicast"
  | "reserved";

export interface HostLiteral {
  kind: "ipv4" | "ipv6";
  /** Dotted decimal for IPv4; for IPv6 the form `new URL()` prints, without brackets or zone. */
  address: string;
  /** An IPv6 zone id ("eth0" in "fe80::1%eth0"); it never changes the address's class. */
  zone?: string;
}

/** A host reduced to what a connection would reach: an address, or a lowercase ASCII name. */
export type CanonicalHost =
  | { kind: "ipv4" | "ipv6"; host: string }
  | { kind: "name"; host: string };

// WHATWG URL's forbidden domain code points, and "*": no real host has one, and refusing it keeps
// a wildcard entry from ever counting as an exact listing.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const FORBIDDEN_IN_NAME = /[\u0000-\u0020#%*/:<>?@[\\\]^|\u007f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters end a host in a URL
const URL_DELIMITERS = /[\u0000-\u0020#/?@\\\u007f]/;
const ZONE_ID = /^[a-z0-9._~-]+$/i;

/**
 * Reduces a host name as a URL parser would: bracketed or bare IPv6, IPv4 in any notation a URL
 * parser or `inet_aton` accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`), Unicode names
 * to punycode, case folded, one trailing dot dropped. Returns null for text that is no valid host
 * (a URL parser would refuse it too), including host:port.
 */
export function canonicalHost(host: string): CanonicalHost | null {
  if (typeof host !== "string" || host === "") return null;
  if (host.startsWith("[")) {
    if (!host.endsWith("]")) return null;
    const literal = parseIPv6Literal(host.slice(1, -1), true);
    return literal && { kind: "ipv6", host: literal.address };
  }
  if (host.includes(":")) {
    const literal = parseIPv6Literal(host, false);
    return literal && { kind: "ipv6", host: literal.address };
  }
  let ascii = host;
  // Full-width digits, "。" and percent-escapes all turn into plain ASCII inside the URL parser,
  // so IDNA mapping is left to the platform's own WHATWG URL implementation.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: any non-ASCII code point
  if (/[^\u0000-\u007f]/.test(host) || host.includes("%")) {
    const mapped = hostnameFromUrlParser(host);
    if (mapped === null) return null;
    ascii = mapped;
  }
  ascii = ascii.toLowerCase();
  if (endsInNumber(ascii)) {
    const value = parseIPv4(ascii);
    return value === null ? null : { kind: "ipv4", host: formatIPv4(value) };
  }
  const name = ascii.endsWith(".") ? ascii.slice(0, -1) : ascii;
  if (name === "" || FORBIDDEN_IN_NAME.test(name) || name.split(".").includes("")) return null;
  return { kind: "name", host: name };
}

/** The IP address a host names, or null when it is a name (or no valid host at all). */
export function parseHostLiteral(host: string): HostLiteral | null {
  if (typeof host !== "string") return null;
  const bracketed = host.startsWith("[") && host.endsWith("]");
  if (bracketed || host.includes(":")) {
    return parseIPv6Literal(bracketed ? host.slice(1, -1) : host, bracketed);
  }
  const canonical = canonicalHost(host);
  return canonical?.kind === "ipv4" ? { kind: "ipv4", address: canonical.host } : null;
}

/** Classifies an IP address in any notation parseHostLiteral accepts; throws for a name. */
export function classifyAddress(ip: string): AddressClass {
  const literal = parseHostLiteral(ip);
  if (literal === null) {
    throw new TypeError(`classifyAddress: ${formatValue(ip)} is not an IP address`);
  }
  return literal.kind === "ipv4"
    ? classifyIPv4(parseIPv4(literal.address) ?? 0)
    : classifyIPv6(parseIPv6(literal.address) ?? []);
}

/**
 * Names that reach loopback or a cloud metadata service without DNS telling us so (browsers and
 * Workers resolve inside fetch, where no address check can run).
 */
const SENSITIVE_NAMES: ReadonlyMap<string, string> = new Map([
  ["localhost", "a loopback host name"],
  ["metadata.google.internal", "a cloud metadata host name"],
  ["metadata", "a cloud metadata host name"],
  ["instance-data", "a cloud metadata host name"],
  ["instance-data.ec2.internal", "a cloud metadata host name"],
]);

/**
 * Why a request to `host` is refused before any lookup, or null when its address class is fine.
 * Host-name matching is a separate check (matchAllowedHost); this one refuses non-public
 * addresses (and names that always reach one) unless that exact host or address is listed.
 */
export function destinationRefusal(host: string, allowed: readonly string[]): string | null {
  const target = canonicalHost(host);
  if (target === null) {
    return `${formatValue(host)} is not a valid host name or IP address`;
  }
  if (target.kind === "name") {
    const what =
      SENSITIVE_NAMES.get(target.host) ??
      (target.host.endsWith(".localhost") ? "a loopback host name" : undefined);
    if (what === undefined || isListedExactly(target, allowed)) return null;
    return `${formatValue(target.host)} is ${what}; list "${target.host}" exactly in allowedHosts to allow it (wildcards and "*" do not)`;
  }
  const addressClass = classifyAddress(target.host);
  if (addressClass === "public" || isListedExactly(target, allowed)) return null;
  return `${formatValue(host)} is ${describeAddress(target.host, addressClass)}; list "${target.host}" exactly in allowedHosts to allow it (wildcards and "*" do not)`;
}

/** True when a request to `host` must be refused for the address it names; see destinationRefusal. */
export function isRefusedDestination(host: string, allowed: readonly string[]): boolean {
  return destinationRefusal(host, allowed) !== null;
}

/**
 * Why connecting to `ip`, which the resolver returned for `requestedHost`, is refused, or null.
 * A non-public address passes only when the task listed the requested name or that address
 * exactly, so a wildcard never lets DNS point a task at a private network (DNS rebinding).
 */
export function resolvedAddressRefusal(
  ip: string,
  requestedHost: string,
  allowed: readonly string[],
): string | null {
  const literal = parseHostLiteral(ip);
  if (literal === null) {
    return `the resolver returned ${formatValue(ip)} for ${formatValue(requestedHost)}, which is not an IP address`;
  }
  const addressClass = classifyAddress(literal.address);
  if (addressClass === "public") return null;
  if (isListedExactly({ kind: literal.kind, host: literal.address }, allowed)) return null;
  const requested = canonicalHost(requestedHost);
  if (requested !== null && isListedExactly(requested, allowed)) return null;
  const name = requested?.host ?? requestedHost;
  return `${formatValue(name)} resolved to ${describeAddress(literal.address, addressClass)}; list "${name}" or "${literal.address}" exactly in allowedHosts to allow it (wildcards and "*" do not)`;
}

/** True when the resolved address must not be connected to; see resolvedAddressRefusal. */
export function isRefusedResolvedAddress(
  ip: string,
  requestedHost: string,
  allowed: readonly string[],
): boolean {
  return resolvedAddressRefusal(ip, requestedHost, allowed) !== null;
}

/** An entry that by itself names this host or address; wildcard entries never do ("*" is no host). */
function isListedExactly(target: CanonicalHost, allowed: readonly string[]): boolean {
  return allowed.some((entry) => {
    const listed = typeof entry === "string" ? canonicalHost(entry) : null;
    return listed !== null && listed.kind === target.kind && listed.host === target.host;
  });
}

const CLASS_TEXT: Readonly<Record<AddressClass, string>> = {
  public: "a public address",
  loopback: "a loopback address",
  private: "a private-network address",
  "link-local": "a link-local address",
  cgnat: "a carrier-grade NAT address (100.64.0.0/10)",
  metadata: "a cloud metadata address",
  unspecified: "an unspecified address",
  multicast: "a multicast address",
  reserved: "a reserved address",
};

function describeAddress(address: string, addressClass: AddressClass): string {
  const pieces = address.includes(":") ? parseIPv6(address) : null;
  const embedded = pieces ? embeddedIPv4(pieces) : null;
  const text = CLASS_TEXT[addressClass];
  return embedded === null
    ? `${address}, ${text}`
    : `${address}, which embeds ${formatIPv4(embedded)}, ${text}`;
}

// ---- IPv4 -----------------------------------------------------------------------------------

/** WHATWG "ends in a number": such a host is parsed as IPv4 or refused, never looked up by name. */
function endsInNumber(host: string): boolean {
  const parts = host.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
  const last = parts[parts.length - 1] ?? "";
  return /^[0-9]+$/.test(last) || parseIPv4Number(last) !== null;
}

/** One part of an IPv4 host: decimal, octal with a leading 0, hex with 0x ("0x" alone is 0). */
function parseIPv4Number(part: string): number | null {
  if (part === "") return null;
  let radix = 10;
  let digits = part;
  if (/^0x/i.test(part)) {
    radix = 16;
    digits = part.slice(2);
    if (digits === "") return 0;
  } else if (part.length > 1 && part.startsWith("0")) {
    radix = 8;
    digits = part.slice(1);
  }
  const valid = radix === 16 ? /^[0-9a-f]+$/i : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  // Huge values lose precision here but still exceed every bound they are checked against.
  return valid.test(digits) ? Number.parseInt(digits, radix) : null;
}

/** The WHATWG IPv4 parser (a superset of what inet_aton accepts): 1 to 4 parts, the last fills the rest. */
function parseIPv4(host: string): number | null {
  const parts = host.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
  if (parts.length > 4) return null;
  const numbers: number[] = [];
  for (const part of parts) {
    const value = parseIPv4Number(part);
    if (value === null) return null;
    numbers.push(value);
  }
  const last = numbers.pop() ?? 0;
  if (numbers.some((value) => value > 255)) return null;
  if (last >= 256 ** (4 - numbers.length)) return null;
  return numbers.reduce((sum, value, index) => sum + value * 256 ** (3 - index), last);
}

function formatIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

type IPv4Range = readonly [base: string, prefixLength: number, addressClass: AddressClass];

// First match wins: the exact metadata addresses sit inside broader ranges below them.
const IPV4_RANGES: readonly IPv4Range[] = [
  ["169.254.169.254", 32, "metadata"], // AWS, GCP, Azure, OpenStack, ...
  ["169.254.170.2", 32, "metadata"], // AWS ECS task metadata
  ["100.100.100.200", 32, "metadata"], // Alibaba Cloud
  ["0.0.0.0", 8, "unspecified"], // "this network"; 0.0.0.0 reaches the local host
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "cgnat"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "reserved"], // IETF protocol assignments
  ["192.0.2.0", 24, "reserved"], // documentation
  ["192.88.99.0", 24, "reserved"], // deprecated 6to4 relay anycast
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "reserved"], // benchmarking
  ["198.51.100.0", 24, "reserved"], // documentation
  ["203.0.113.0", 24, "reserved"], // documentation
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"], // includes the broadcast address
];

const IPV4_TABLE = IPV4_RANGES.map(([base, prefixLength, addressClass]) => ({
  base: parseIPv4(base) ?? 0,
  size: 2 ** (32 - prefixLength),
  addressClass,
}));

function classifyIPv4(value: number): AddressClass {
  for (const { base, size, addressClass } of IPV4_TABLE) {
    if (value >= base && value < base + size) return addressClass;
  }
  return "public";
}

// ---- IPv6 -----------------------------------------------------------------------------------

function parseIPv6Literal(text: string, bracketed: boolean): HostLiteral | null {
  const percent = text.indexOf("%");
  let zone: string | undefined;
  let addressText = text;
  if (percent !== -1) {
    addressText = text.slice(0, percent);
    // Inside a URL the zone's "%" itself is escaped as "%25" (RFC 6874).
    zone = text.slice(percent + 1);
    if (bracketed && zone.startsWith("25") && zone.length > 2) zone = zone.slice(2);
    if (!ZONE_ID.test(zone)) return null;
  }
  const pieces = parseIPv6(addressText);
  if (pieces === null) return null;
  const literal: HostLiteral = { kind: "ipv6", address: formatIPv6(pieces) };
  if (zone !== undefined) literal.zone = zone;
  return literal;
}

/** The WHATWG IPv6 parser: eight 16-bit pieces, "::" once, an optional dotted IPv4 tail. */
function parseIPv6(input: string): number[] | null {
  const pieces = [0, 0, 0, 0, 0, 0, 0, 0];
  let pieceIndex = 0;
  let compress: number | null = null;
  let pointer = 0;
  const at = (index: number) => input[index] ?? "";
  if (at(0) === ":") {
    if (at(1) !== ":") return null;
    pointer = 2;
    pieceIndex = 1;
    compress = 1;
  }
  while (pointer < input.length) {
    if (pieceIndex === 8) return null;
    if (at(pointer) === ":") {
      if (compress !== null) return null;
      pointer++;
      pieceIndex++;
      compress = pieceIndex;
      continue;
    }
    let value = 0;
    let length = 0;
    while (length < 4 && /^[0-9a-f]$/i.test(at(pointer))) {
      value = value * 16 + Number.parseInt(at(pointer), 16);
      pointer++;
      length++;
    }
    if (at(pointer) === ".") {
      if (length === 0 || pieceIndex > 6) return null;
      pointer -= length;
      let numbersSeen = 0;
      while (pointer < input.length) {
        if (numbersSeen > 0) {
          if (at(pointer) !== "." || numbersSeen >= 4) return null;
          pointer++;
        }
        if (!/^[0-9]$/.test(at(pointer))) return null;
        let part: number | null = null;
        while (/^[0-9]$/.test(at(pointer))) {
          const digit = Number(at(pointer));
          // A leading zero ("01") is refused: no octal inside IPv6.
          if (part === 0) return null;
          part = part === null ? digit : part * 10 + digit;
          if (part > 255) return null;
          pointer++;
        }
        pieces[pieceIndex] = (pieces[pieceIndex] ?? 0) * 256 + (part ?? 0);
        numbersSeen++;
        if (numbersSeen === 2 || numbersSeen === 4) pieceIndex++;
      }
      if (numbersSeen !== 4) return null;
      break;
    }
    if (at(pointer) === ":") {
      pointer++;
      if (pointer >= input.length) return null;
    } else if (pointer < input.length) {
      return null;
    }
    pieces[pieceIndex] = value;
    pieceIndex++;
  }
  if (compress !== null) {
    let swaps = pieceIndex - compress;
    pieceIndex = 7;
    while (pieceIndex !== 0 && swaps > 0) {
      const other = compress + swaps - 1;
      const moved = pieces[other] ?? 0;
      pieces[other] = pieces[pieceIndex] ?? 0;
      pieces[pieceIndex] = moved;
      pieceIndex--;
      swaps--;
    }
  } else if (pieceIndex !== 8) {
    return null;
  }
  return pieces;
}

/** The WHATWG serialisation: lowercase hex, the first longest run of two or more zeros as "::". */
function formatIPv6(pieces: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; ) {
    let end = start;
    while (end < 8 && pieces[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end === start ? start + 1 : end;
  }
  if (bestStart === -1) return pieces.map((piece) => piece.toString(16)).join(":");
  const head = pieces.slice(0, bestStart).map((piece) => piece.toString(16));
  const tail = pieces.slice(bestStart + bestLength).map((piece) => piece.toString(16));
  return `${head.join(":")}::${tail.join(":")}`;
}

/** The IPv4 address carried inside an IPv6 one, for the forms a network would route to it. */
function embeddedIPv4(pieces: readonly number[]): number | null {
  const [p0 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0, p5 = 0, p6 = 0, p7 = 0] = pieces;
  const tail = p6 * 0x10000 + p7;
  const zeroHead = p0 === 0 && p1 === 0 && p2 === 0 && p3 === 0;
  if (zeroHead && p4 === 0 && p5 === 0xffff) return tail; // ::ffff:a.b.c.d, IPv4-mapped
  if (zeroHead && p4 === 0xffff && p5 === 0) return tail; // ::ffff:0:a.b.c.d, SIIT
  if (zeroHead && p4 === 0 && p5 === 0 && tail > 1) return tail; // ::a.b.c.d, IPv4-compatible
  if (p0 === 0x64 && p1 === 0xff9b && p2 === 0 && p3 === 0 && p4 === 0 && p5 === 0) return tail; // NAT64
  if (p0 === 0x2002) return p1 * 0x10000 + p2; // 6to4
  return null;
}

function classifyIPv6(pieces: readonly number[]): AddressClass {
  const [p0 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0, p5 = 0, p6 = 0, p7 = 0] = pieces;
  const restZero = p1 === 0 && p2 === 0 && p3 === 0 && p4 === 0 && p5 === 0 && p6 === 0;
  if (p0 === 0 && restZero && p7 === 0) return "unspecified";
  if (p0 === 0 && restZero && p7 === 1) return "loopback";
  // AWS's IPv6 instance metadata endpoint, fd00:ec2::254.
  if (p0 === 0xfd00 && p1 === 0xec2 && p2 === 0 && p3 === 0 && p4 === 0 && p5 === 0) {
    if (p6 === 0 && p7 === 0x254) return "metadata";
  }
  const embedded = embeddedIPv4(pieces);
  if (embedded !== null) return classifyIPv4(embedded);
  if (p0 === 0x64 && p1 === 0xff9b && p2 === 1) return "private"; // 64:ff9b:1::/48, local-use NAT64
  if (p0 === 0x100 && p1 === 0 && p2 === 0 && p3 === 0) return "reserved"; // 100::/64, discard
  if (p0 === 0x2001 && p1 === 0xdb8) return "reserved"; // documentation
  if (p0 === 0x2001 && p1 < 0x200) return "reserved"; // 2001::/23: Teredo, benchmarking, ORCHID
  if (p0 === 0x3fff && p1 < 0x1000) return "reserved"; // 3fff::/20, documentation
  if (p0 === 0x5f00) return "reserved"; // SRv6 SIDs
  if ((p0 & 0xfe00) === 0xfc00) return "private"; // fc00::/7, unique local
  if ((p0 & 0xffc0) === 0xfe80) return "link-local";
  if ((p0 & 0xffc0) === 0xfec0) return "private"; // deprecated site-local
  if ((p0 & 0xff00) === 0xff00) return "multicast";
  if ((p0 & 0xe000) === 0x2000) return "public"; // 2000::/3, global unicast
  return "reserved";
}

/** Runs a host through the WHATWG host parser (IDNA, percent-decoding); null when it refuses. */
function hostnameFromUrlParser(host: string): string | null {
  if (URL_DELIMITERS.test(host)) return null;
  try {
    return new URL(`http://${host}/`).hostname;
  } catch {
    return null;
  }
}
