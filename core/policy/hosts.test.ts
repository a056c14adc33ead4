import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { configError } from "../testing/config-error.ts";
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
    );
  });

  it("*.x matches exactly one extra label, never zero or two", () => {
    fc.assert(
      fc.property(name, label, label, (parent, first, second) => {
        expect(matchAllowedHost(`${first}.${parent}`, [`*.${parent}`])).toBe(true);
        expect(matchAllowedHost(parent, [`*.${parent}`])).toBe(false);
        expect(matchAllowedHost(`${first}.${second}.${parent}`, [`*.${parent}`])).toBe(false);
      }),
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
