import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { configError } from "../testing/config-error.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import { matchAllowedHost, matchAllowedHostRules, parseAllowedHosts } from "./hosts.ts";

// Labels start with a letter: a host ending in a number is an IPv4 address or invalid.
const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));

describe("matchAllowedHost", () => {
  it.each([
    // "*" allows every valid host.
    ["*", "example.com", true],
    ["*", "10.0.0.1", true],
    ["*", "[::1]", true],
    ["*", "a b", false],
    // A bare domain: itself and every subdomain.
    ["x.com", "x.com", true],
    ["x.com", "api.x.com", true],
    ["x.com", "a.b.c.x.com", true],
    ["x.com", "X.COM", true],
    ["x.com", "x.com.", true],
    ["X.Com.", "api.x.com", true],
    ["x.com", "evilx.com", false],
    ["x.com", "x.com.evil.net", false],
    ["x.com", "com", false],
    // "*.x.com": exactly one more label.
    ["*.x.com", "api.x.com", true],
    ["*.x.com", "API.X.COM.", true],
    ["*.x.com", "x.com", false],
    ["*.x.com", "a.b.x.com", false],
    ["*.x.com", "evilx.com", false],
    ["*.x.com.", "api.x.com", true],
    // "api.*": "api." and at least one more label.
    ["api.*", "api.x", true],
    ["api.*", "api.x.y", true],
    ["api.*", "API.example.com", true],
    ["api.*", "api", false],
    ["api.*", "apix.com", false],
    ["api.*", "www.api.com", false],
    ["api.v1.*", "api.v1.x.com", true],
    ["api.v1.*", "api.v2.x.com", false],
    // IP entries match that address only, in any notation.
    ["127.0.0.1", "127.0.0.1", true],
    ["127.0.0.1", "0x7f.1", true],
    ["127.0.0.1", "2130706433", true],
    ["127.0.0.1", "127.0.0.2", false],
    ["0.1", "127.0.0.1", false],
    ["0.0.1", "0.0.0.1", true],
    ["[::1]", "[::1]", true],
    ["::1", "[0:0::1]", true],
    ["[::1]", "::1", true],
    ["[::1]", "127.0.0.1", false],
    // Names never reach addresses and wildcards never reach addresses.
    ["api.*", "127.0.0.1", false],
    ["127.*", "127.0.0.1", false],
    ["*.0.0.1", "127.0.0.1", false],
    // Unicode names compare in their punycode form.
    ["bücher.de", "xn--bcher-kva.de", true],
    ["bücher.de", "www.BÜCHER.de", true],
    ["xn--bcher-kva.de", "shop.bücher.de", true],
    ["*.bücher.de", "shop.xn--bcher-kva.de", true],
    ["bücher.*", "xn--bcher-kva.de", true],
    ["bücher.de", "bucher.de", false],
    // Ports are not part of matching: the host given is a host name.
    ["x.com", "x.com:443", false],
  ] as const)("%j allows %j: %s", (entry, host, expected) => {
    expect(matchAllowedHost(host, [entry])).toBe(expected);
  });

  it("allows nothing with no entries and ignores an entry that is not valid", () => {
    expect(matchAllowedHost("x.com", [])).toBe(false);
    expect(matchAllowedHost("x.com", ["https://x.com", "*x.com", "x.com:443"])).toBe(false);
    expect(matchAllowedHost("x.com", ["nope.org", "x.com"])).toBe(true);
  });

  it("a bare domain matches itself and all its subdomains, and nothing else", () => {
    fc.assert(
      fc.property(name, fc.array(label, { maxLength: 3 }), name, (domain, extra, other) => {
        const sub = [...extra, domain].join(".");
        expect(matchAllowedHost(sub, [domain])).toBe(true);
        expect(matchAllowedHost(sub.toUpperCase(), [domain])).toBe(true);
        const expected = other === domain || other.endsWith(`.${domain}`);
        expect(matchAllowedHost(other, [domain])).toBe(expected);
      }),
      { numRuns: fuzzRuns(100) },
    );
  });

  it("*.x matches exactly one extra label, never zero or two", () => {
    fc.assert(
      fc.property(name, label, label, (parent, first, second) => {
        expect(matchAllowedHost(`${first}.${parent}`, [`*.${parent}`])).toBe(true);
        expect(matchAllowedHost(parent, [`*.${parent}`])).toBe(false);
        expect(matchAllowedHost(`${first}.${second}.${parent}`, [`*.${parent}`])).toBe(false);
      }),
      { numRuns: fuzzRuns(100) },
    );
  });

  it("prefix.* needs the prefix and at least one more label", () => {
    fc.assert(
      fc.property(name, fc.array(label, { minLength: 1, maxLength: 3 }), (prefix, rest) => {
        fc.pre(!/^[0-9.]+$/.test(prefix));
        expect(matchAllowedHost(`${prefix}.${rest.join(".")}`, [`${prefix}.*`])).toBe(true);
        expect(matchAllowedHost(prefix, [`${prefix}.*`])).toBe(false);
        expect(matchAllowedHost(`x${prefix}.${rest.join(".")}`, [`${prefix}.*`])).toBe(false);
      }),
      { numRuns: fuzzRuns(100) },
    );
  });

  it("gives the same answer from compiled rules", () => {
    const entries = ["x.com", "*.y.org", "api.*", "10.0.0.1", "[::1]"];
    const rules = parseAllowedHosts(entries, "allowedHosts");
    fc.assert(
      fc.property(
        fc.oneof(name, fc.constantFrom("10.0.0.1", "::1", "[::1]", "api.z", "a.y.org")),
        (host) => {
          expect(matchAllowedHostRules(host, rules)).toBe(matchAllowedHost(host, entries));
        },
      ),
      { numRuns: fuzzRuns(100) },
    );
  });
});

describe("matchAllowedHost on any host text", () => {
  /**
   * The platform's WHATWG URL parser is the judge of what a host is: a request goes where
   * `new URL(...).hostname` says. Null when it refuses the text, or when the text would not stay
   * one host inside a URL (a "/", "@", ":" or white space would make it something else).
   */
  function urlHostname(host: string): string | null {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters end a host
    if (/[\u0000-\u0020/?#@\\:]/.test(host)) return null;
    try {
      const hostname = new URL(`http://${host}/`).hostname;
      return hostname.endsWith(".") ? hostname.slice(0, -1) : hostname;
    } catch {
      return null;
    }
  }

  /** Characters that change meaning inside a host: case, Unicode mappings, escapes, delimiters. */
  const hostUnit = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(..."abcxyz0129-_.") },
    { weight: 3, arbitrary: fc.constantFrom(..."ABCXYZ") },
    fc.constantFrom("ü", "ß", "İ", "ı", "ﬃ", "\u212a", "ſ", "Ａ", "ｘ", "。", "．", "\u00ad"),
    fc.constantFrom("\u200b", "%2e", "%2E", "%41", "*", "%", "!", "\u3000", "\u0663"),
    fc.constantFrom("/", ":", "@", " ", "\t", "\0", "#", "[", "]", "\\", "?"),
    fc.integer({ min: 0x80, max: 0x2fff }).map((code) => String.fromCharCode(code)),
  );
  const hostText = fc.string({ unit: hostUnit, maxLength: 16 });
  /** Mostly a plain label, now and then with one odd character. */
  const labelText = fc.string({
    unit: fc.oneof({ weight: 30, arbitrary: fc.constantFrom(..."abcxyz0129-_") }, hostUnit),
    minLength: 1,
    maxLength: 8,
  });
  const parent = fc.oneof(
    name,
    fc.constantFrom("x.com", "bücher.de", "xn--bcher-kva.de", "a-b.c_d.io", "co.uk", "com"),
  );
  /** A spelling of `domain` a user or a URL might write: other case, full-width dots, a final dot. */
  const spelling = (domain: string) =>
    fc
      .tuple(fc.constantFrom("as is", "upper", "full-width dots", "ideographic dots"), fc.boolean())
      .map(([form, trailingDot]) => {
        const written =
          form === "upper"
            ? domain.toUpperCase()
            : form === "full-width dots"
              ? domain.replaceAll(".", "．")
              : form === "ideographic dots"
                ? domain.replaceAll(".", "。")
                : domain;
        return trailingDot ? `${written}.` : written;
      });
  /** Hosts near a domain: under it, beside it, above it, or any text at all. */
  const hostNear = (domain: string) =>
    fc.oneof(
      {
        weight: 2,
        arbitrary: fc
          .tuple(labelText, spelling(domain))
          .map(([label, written]) => `${label}.${written}`),
      },
      fc
        .tuple(fc.array(labelText, { maxLength: 3 }), spelling(domain))
        .map(([labels, written]) => [...labels, written].join(".")),
      fc
        .tuple(fc.array(hostText, { maxLength: 3 }), spelling(domain))
        .map(([labels, written]) => [...labels, written].join(".")),
      fc.tuple(hostText, spelling(domain)).map(([prefix, written]) => `${prefix}${written}`),
      fc.tuple(spelling(domain), hostText).map(([written, suffix]) => `${written}.${suffix}`),
      hostText,
    );
  const validPattern = (pattern: string) => {
    try {
      parseAllowedHosts([pattern], "allowedHosts");
      return true;
    } catch {
      return false;
    }
  };

  it("a host allowed by *.x.com always ends in .x.com with exactly one more label, and every such host is allowed", () => {
    const casePattern = parent.chain((domain) =>
      fc.tuple(fc.constant(domain), spelling(domain), hostNear(domain)),
    );
    fc.assert(
      fc.property(casePattern, ([domain, written, host]) => {
        const pattern = `*.${written}`;
        if (!validPattern(pattern)) return;
        const parentHost = urlHostname(domain);
        const target = urlHostname(host);
        const allowed = matchAllowedHost(host, [pattern]);
        const extra =
          parentHost !== null && target?.endsWith(`.${parentHost}`)
            ? target.slice(0, -parentHost.length - 1)
            : null;
        if (allowed) {
          expect(extra, host).not.toBeNull();
          expect(extra !== "" && !extra?.includes("."), host).toBe(true);
        }
        // One more well-formed label (as the URL parser writes it) is always allowed.
        if (extra !== null && /^[a-z0-9_-]+$/.test(extra) && !target?.includes("..")) {
          expect(allowed, host).toBe(true);
        }
      }),
      { numRuns: fuzzRuns(1000) },
    );
  });

  it("a bare domain allows exactly the domain and its subdomains", () => {
    const casePattern = parent.chain((domain) =>
      fc.tuple(fc.constant(domain), spelling(domain), hostNear(domain)),
    );
    fc.assert(
      fc.property(casePattern, ([domain, written, host]) => {
        if (!validPattern(written)) return;
        const domainHost = urlHostname(domain);
        const target = urlHostname(host);
        const under =
          domainHost !== null &&
          target !== null &&
          (target === domainHost || target.endsWith(`.${domainHost}`));
        // A name with an empty label or a "*" is no host a request can reach: never allowed.
        const wellFormed =
          target !== null && !target.split(".").includes("") && !target.includes("*");
        expect(matchAllowedHost(host, [written]), host).toBe(under && wellFormed);
      }),
      { numRuns: fuzzRuns(1000) },
    );
  });
});

describe("parseAllowedHosts", () => {
  it("compiles each kind of entry", () => {
    expect(
      parseAllowedHosts(
        ["*", "API.X.com.", "*.x.com", "api.*", "0x7f.1", "[::1]", "bücher.de"],
        "allowedHosts",
      ),
    ).toEqual([
      { kind: "any", entry: "*" },
      { kind: "domain", domain: "api.x.com", entry: "API.X.com." },
      { kind: "subdomain", parent: "x.com", entry: "*.x.com" },
      { kind: "prefix", prefix: "api", entry: "api.*" },
      { kind: "address", address: "127.0.0.1", entry: "0x7f.1" },
      { kind: "address", address: "::1", entry: "[::1]" },
      { kind: "domain", domain: "xn--bcher-kva.de", entry: "bücher.de" },
    ]);
  });

  it.each([
    ["", "is empty"],
    ["  ", "is empty"],
    ["a b.com", "contains white space"],
    ["https://x.com", 'has a scheme; give the host name only, like "x.com"'],
    ["x.com/api", 'has a path; give the host name only, like "x.com"'],
    ["user@x.com", "has user info"],
    ["x.com:443", 'has a port; ports are not part of matching, write "x.com"'],
    ["[::1]:8080", 'has a port; ports are not part of matching, write "[::1]"'],
    ["*x.com", 'has a "*" that is not a whole first or last label'],
    ["a.*.com", 'has a "*" that is not a whole first or last label'],
    ["**.x.com", 'has a "*" that is not a whole first or last label'],
    ["*.*", 'has a "*" that is not a whole first or last label'],
    ["*.", "has a"],
    ["*.10.0.0.1", "is not a valid host name"],
    ["192.168.*", "looks like an IP range"],
    ["x..com", "is not a valid host name or IP address"],
    ["foo.123", "is not a valid host name or IP address"],
    ["256.1.1.1", "is not a valid host name or IP address"],
    ["[::g]", "is not a valid IPv6 address"],
    ["a!b.com", "is not a valid host name (each label is 1 to 63 letters"],
    [`${"a".repeat(64)}.com`, "is not a valid host name (each label is 1 to 63 letters"],
    [`${"abcdefghi.".repeat(26)}com`, "is longer than 253 characters"],
    [42, "is not a string"],
  ])("refuses %j: %s", (entry, problem) => {
    const error = configError(() => parseAllowedHosts(["ok.com", entry], "allowed_hosts"));
    expect(error.message).toContain(`allowed_hosts[1]: ${JSON.stringify(entry)} ${problem}`);
    expect(error.message).toContain('"*.example.com" (exactly one more label)');
  });

  it("names the option and the bad entry exactly", () => {
    expect(configError(() => parseAllowedHosts(["*x.com"], "allowedHosts")).message).toBe(
      'allowedHosts[0]: "*x.com" has a "*" that is not a whole first or last label (write "*.example.com" or "api.*"); use a host name like "api.example.com" (itself and its subdomains), "*.example.com" (exactly one more label), "api.*" (api. and more labels), an IP address like "10.0.0.5" or "[::1]", or "*" (any host)',
    );
  });

  it("refuses what is not a list", () => {
    expect(configError(() => parseAllowedHosts("x.com", "allowedHosts")).message).toMatch(
      /^allowedHosts: "x.com" is not a list/,
    );
  });
});
