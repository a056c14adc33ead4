import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PermissionDeniedError } from "../errors.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import {
  type AddressClass,
  canonicalHost,
  classifyAddress,
  destinationRefusal,
  isRefusedDestination,
  isRefusedResolvedAddress,
  parseHostLiteral,
  resolvedAddressRefusal,
} from "./addresses.ts";
import { refuseDestination } from "./requests.ts";

/** What the platform's WHATWG URL parser makes of a host, or null when it refuses it. */
function urlHostname(host: string): string | null {
  try {
    return new URL(`http://${host}/`).hostname;
  } catch {
    return null;
  }
}

/** An IPv4 address written in one of the many notations URL parsers and inet_aton accept. */
const ipv4Notation = (value: number) =>
  fc
    .record({
      parts: fc.integer({ min: 1, max: 4 }),
      radixes: fc.array(fc.constantFrom("dec", "oct", "hex", "HEX"), {
        minLength: 4,
        maxLength: 4,
      }),
      zeros: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }),
      trailingDot: fc.boolean(),
    })
    .map(({ parts, radixes, zeros, trailingDot }) => {
      const bytes = [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256);
      const numbers = [...bytes.slice(0, parts - 1)];
      numbers.push(bytes.slice(parts - 1).reduce((sum, byte) => sum * 256 + byte, 0));
      const text = numbers.map((number, i) => {
        const radix = radixes[i];
        const pad = "0".repeat(zeros[i] ?? 0);
        if (radix === "oct") return `0${pad}${number.toString(8)}`;
        if (radix === "hex") return `0x${pad}${number.toString(16)}`;
        if (radix === "HEX") return `0X${pad}${number.toString(16).toUpperCase()}`;
        return number.toString(10);
      });
      return `${text.join(".")}${trailingDot ? "." : ""}`;
    });

const uint32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });

describe("parseHostLiteral", () => {
  it.each([
    ["127.0.0.1", "ipv4", "127.0.0.1"],
    ["2130706433", "ipv4", "127.0.0.1"],
    ["0x7f000001", "ipv4", "127.0.0.1"],
    ["0x7f.0.0.1", "ipv4", "127.0.0.1"],
    ["0X7F.1", "ipv4", "127.0.0.1"],
    ["0177.0.0.1", "ipv4", "127.0.0.1"],
    ["017700000001", "ipv4", "127.0.0.1"],
    ["127.1", "ipv4", "127.0.0.1"],
    ["127.0.1", "ipv4", "127.0.0.1"],
    ["127.0.0.1.", "ipv4", "127.0.0.1"],
    ["0x", "ipv4", "0.0.0.0"],
    ["0", "ipv4", "0.0.0.0"],
    ["4294967295", "ipv4", "255.255.255.255"],
    ["１２７．０．０．１", "ipv4", "127.0.0.1"],
    ["127.0.0.%31", "ipv4", "127.0.0.1"],
    ["::1", "ipv6", "::1"],
    ["[::1]", "ipv6", "::1"],
    ["[0:0:0:0:0:0:0:1]", "ipv6", "::1"],
    ["[::ffff:127.0.0.1]", "ipv6", "::ffff:7f00:1"],
    ["::ffff:7f00:1", "ipv6", "::ffff:7f00:1"],
    ["[64:ff9b::10.0.0.1]", "ipv6", "64:ff9b::a00:1"],
    ["[2002:c0a8:0101::1]", "ipv6", "2002:c0a8:101::1"],
    ["[FE80::1]", "ipv6", "fe80::1"],
    ["[2001:DB8:0:0:1:0:0:1]", "ipv6", "2001:db8::1:0:0:1"],
  ] as const)("reads %j as %s %s", (host, kind, address) => {
    expect(parseHostLiteral(host)).toEqual({ kind, address });
  });

  it("keeps an IPv6 zone id apart from the address", () => {
    expect(parseHostLiteral("fe80::1%eth0")).toEqual({
      kind: "ipv6",
      address: "fe80::1",
      zone: "eth0",
    });
    expect(parseHostLiteral("[fe80::1%25eth0]")).toEqual({
      kind: "ipv6",
      address: "fe80::1",
      zone: "eth0",
    });
    expect(parseHostLiteral("fe80::1%")).toBeNull();
    expect(parseHostLiteral("fe80::1%eth/0")).toBeNull();
  });

  it.each([
    "example.com",
    "localhost",
    "1.2.3.4.5",
    "09.1.1.1",
    "1.2.3.09",
    "256.1.1.1",
    "1.2.3.256",
    "0x100000000",
    "4294967296",
    "1..2",
    "1.2.3.4 ",
    "[::1",
    "[1:2:3:4:5:6:7:8:9]",
    "[::ffff:01.2.3.4]",
    "[::1.2.3]",
    "1:2",
    "x.com:443",
    "",
  ])("finds no address in %j", (host) => {
    expect(parseHostLiteral(host)).toBeNull();
  });

  it("agrees with the platform URL parser on every IPv4 notation", () => {
    fc.assert(
      fc.property(
        uint32.chain((value) => ipv4Notation(value).map((text) => [value, text] as const)),
        ([, text]) => {
          const literal = parseHostLiteral(text);
          expect(literal?.kind).toBe("ipv4");
          expect(literal?.address).toBe(urlHostname(text));
        },
      ),
      { numRuns: fuzzRuns(1000) },
    );
  });

  it("agrees with the platform URL parser on IPv6 text, valid or not", () => {
    const piece = fc.integer({ min: 0, max: 0xffff });
    const written = fc
      .record({
        pieces: fc.array(fc.oneof(piece, fc.constant(0)), { minLength: 8, maxLength: 8 }),
        compressAt: fc.integer({ min: -1, max: 7 }),
        compressLength: fc.integer({ min: 1, max: 8 }),
        upper: fc.boolean(),
        dottedTail: fc.boolean(),
      })
      .map(({ pieces, compressAt, compressLength, upper, dottedTail }) => {
        let groups = pieces.map((p) => p.toString(16));
        if (dottedTail) {
          const [a = 0, b = 0] = pieces.slice(6);
          groups = [...groups.slice(0, 6), `${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`];
        }
        let text = groups.join(":");
        if (compressAt >= 0) {
          const head = groups.slice(0, compressAt).join(":");
          const tail = groups.slice(compressAt + compressLength).join(":");
          text = `${head}::${tail}`;
        }
        return upper ? text.toUpperCase() : text;
      });
    const noise = fc.string({
      unit: fc.constantFrom(..."0123456789abcdefABCDEF:.x"),
      maxLength: 24,
    });
    fc.assert(
      fc.property(fc.oneof(written, noise), (text) => {
        const fromUrl = urlHostname(`[${text}]`);
        const literal = parseHostLiteral(`[${text}]`);
        expect(literal?.address ?? null).toBe(fromUrl === null ? null : fromUrl.slice(1, -1));
      }),
      { numRuns: fuzzRuns(1500) },
    );
  });

  it("never calls something an address that the URL parser reads otherwise", () => {
    const text = fc.string({ unit: fc.constantFrom(..."0123456789abcdefxX."), maxLength: 20 });
    fc.assert(
      fc.property(text, (host) => {
        const canonical = canonicalHost(host);
        const fromUrl = urlHostname(host);
        if (canonical !== null) {
          expect(fromUrl).not.toBeNull();
          expect(canonical.host).toBe(fromUrl?.replace(/\.$/, ""));
        }
        if (fromUrl !== null && /^\d+\.\d+\.\d+\.\d+$/.test(fromUrl)) {
          expect(canonical).toEqual({ kind: "ipv4", host: fromUrl });
        }
      }),
      { numRuns: fuzzRuns(1500) },
    );
  });
});

describe("canonicalHost", () => {
  it.each([
    ["Example.COM", "example.com"],
    ["example.com.", "example.com"],
    ["Bücher.de", "xn--bcher-kva.de"],
    ["xn--bcher-kva.de", "xn--bcher-kva.de"],
    ["例え。テスト", "xn--r8jz45g.xn--zckzah"],
  ])("reduces %j to the name %j", (host, name) => {
    expect(canonicalHost(host)).toEqual({ kind: "name", host: name });
  });

  it.each([
    "a b.com",
    "a..com",
    ".",
    "x.com..",
    "x.com:443",
    "*.x.com",
    "a/b",
    "a@b",
    "foo.123",
    "foo.0x",
    "a\u0000b",
  ])("refuses %j", (host) => {
    expect(canonicalHost(host)).toBeNull();
  });
});

describe("classifyAddress", () => {
  it.each([
    ["8.8.8.8", "public"],
    ["1.1.1.1", "public"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.0.0.0", "private"],
    ["10.255.255.255", "private"],
    ["11.0.0.0", "public"],
    ["100.63.255.255", "public"],
    ["100.64.0.0", "cgnat"],
    ["100.127.255.255", "cgnat"],
    ["100.128.0.0", "public"],
    ["100.100.100.200", "metadata"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["169.254.0.1", "link-local"],
    ["169.254.169.254", "metadata"],
    ["169.254.170.2", "metadata"],
    ["172.15.255.255", "public"],
    ["172.16.0.0", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.0", "public"],
    ["192.0.0.8", "reserved"],
    ["192.0.2.1", "reserved"],
    ["192.88.99.1", "reserved"],
    ["192.168.1.1", "private"],
    ["192.169.0.0", "public"],
    ["198.18.0.1", "reserved"],
    ["198.19.255.255", "reserved"],
    ["198.20.0.0", "public"],
    ["198.51.100.7", "reserved"],
    ["203.0.113.9", "reserved"],
    ["223.255.255.255", "public"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.255", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["::2", "unspecified"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:8.8.8.8", "public"],
    ["::ffff:0:10.0.0.1", "private"],
    ["::127.0.0.1", "loopback"],
    ["::169.254.169.254", "metadata"],
    ["64:ff9b::127.0.0.1", "loopback"],
    ["64:ff9b::10.1.2.3", "private"],
    ["64:ff9b::8.8.8.8", "public"],
    ["64:ff9b:1::1", "private"],
    ["2002:7f00:1::", "loopback"],
    ["2002:c0a8:101::1", "private"],
    ["2002:808:808::1", "public"],
    ["100::1", "reserved"],
    ["2001::1", "reserved"],
    ["2001:db8::1", "reserved"],
    ["2001:4860:4860::8888", "public"],
    ["2606:4700:4700::1111", "public"],
    ["3fff::1", "reserved"],
    ["5f00::1", "reserved"],
    ["fc00::1", "private"],
    ["fdff:ffff::1", "private"],
    ["fd00:ec2::254", "metadata"],
    ["fe80::1", "link-local"],
    ["febf::1", "link-local"],
    ["fec0::1", "private"],
    ["ff02::1", "multicast"],
    ["4000::1", "reserved"],
    ["1::", "reserved"],
  ] as const)("%s is %s", (ip, addressClass: AddressClass) => {
    expect(classifyAddress(ip)).toBe(addressClass);
  });

  it("refuses to classify a name", () => {
    expect(() => classifyAddress("example.com")).toThrow(/"example.com" is not an IP address/);
  });
});

describe("isRefusedDestination", () => {
  it("refuses every loopback address in every notation", () => {
    const loopback = fc.integer({ min: 127 * 2 ** 24, max: 128 * 2 ** 24 - 1 });
    fc.assert(
      fc.property(
        loopback.chain((value) => ipv4Notation(value)),
        (host) => {
          expect(isRefusedDestination(host, [])).toBe(true);
          expect(isRefusedDestination(host, ["*"])).toBe(true);
        },
      ),
      { numRuns: fuzzRuns(1000) },
    );
  });

  it("refuses a loopback address inside every IPv6 wrapping", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 24 - 1 }), (low) => {
        const high = 0x7f00 + (low >> 16);
        const rest = (low & 0xffff).toString(16);
        const hex = `${high.toString(16)}:${rest}`;
        for (const host of [
          `[::ffff:${hex}]`,
          `[::ffff:0:${hex}]`,
          `[::${hex}]`,
          `[64:ff9b::${hex}]`,
          `[2002:${hex}::1]`,
        ]) {
          expect(isRefusedDestination(host, ["*"]), host).toBe(true);
        }
      }),
      { numRuns: fuzzRuns(300) },
    );
  });

  it.each([
    "localhost",
    "LOCALHOST.",
    "app.localhost",
    "ｌｏｃａｌｈｏｓｔ",
    "metadata.google.internal",
    "Metadata.Google.Internal.",
    "metadata",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "[fe80::1%25eth0]",
    "[fc00::1]",
    "0.0.0.0",
    "[::]",
    "224.0.0.251",
    "a b",
    "",
  ])("refuses %j", (host) => {
    expect(isRefusedDestination(host, ["*", "*.google.internal", "google.internal"])).toBe(true);
  });

  it.each([
    "example.com",
    "8.8.8.8",
    "[2606:4700:4700::1111]",
    "api.github.com",
  ])("lets %j through (host matching is a separate check)", (host) => {
    expect(isRefusedDestination(host, [])).toBe(false);
  });

  it("allows a non-public host listed exactly, in any notation", () => {
    expect(isRefusedDestination("127.0.0.1", ["127.0.0.1"])).toBe(false);
    expect(isRefusedDestination("0x7f.1", ["127.0.0.1"])).toBe(false);
    expect(isRefusedDestination("127.0.0.1", ["2130706433"])).toBe(false);
    expect(isRefusedDestination("[::1]", ["::1"])).toBe(false);
    expect(isRefusedDestination("[0::1]", ["[::1]"])).toBe(false);
    expect(isRefusedDestination("localhost", ["LocalHost."])).toBe(false);
    expect(isRefusedDestination("metadata.google.internal", ["metadata.google.internal"])).toBe(
      false,
    );
    expect(isRefusedDestination("127.0.0.2", ["127.0.0.1"])).toBe(true);
    expect(isRefusedDestination("app.localhost", ["localhost"])).toBe(true);
    expect(isRefusedDestination("::ffff:127.0.0.1", ["127.0.0.1"])).toBe(true);
  });

  it("explains a refusal with the address and the exact entry that would allow it", () => {
    expect(destinationRefusal("0x7f.1", [])).toBe(
      '"0x7f.1" is 127.0.0.1, a loopback address; list "127.0.0.1" exactly in allowedHosts to allow it (wildcards and "*" do not)',
    );
    expect(destinationRefusal("[::ffff:10.0.0.1]", [])).toContain(
      "::ffff:a00:1, which embeds 10.0.0.1, a private-network address",
    );
    expect(destinationRefusal("metadata.google.internal", ["*"])).toContain(
      "a cloud metadata host name",
    );
    expect(destinationRefusal("x y", [])).toBe('"x y" is not a valid host name or IP address');
  });
});

describe("non-public addresses against any allowedHosts", () => {
  /** IPv4 ranges that are not public, as [first, last] 32-bit values. */
  const NON_PUBLIC_IPV4: readonly [number, number][] = [
    [0x00000000, 0x00ffffff],
    [0x0a000000, 0x0affffff],
    [0x64400000, 0x647fffff],
    [0x7f000000, 0x7fffffff],
    [0xa9fe0000, 0xa9feffff],
    [0xac100000, 0xac1fffff],
    [0xc0a80000, 0xc0a8ffff],
    [0xe0000000, 0xffffffff],
  ];
  const nonPublicIPv4 = fc
    .constantFrom(...NON_PUBLIC_IPV4)
    .chain(([first, last]) => fc.integer({ min: first, max: last }));
  const dotted = (value: number) =>
    [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
  const hexPair = (value: number) =>
    `${Math.floor(value / 65536).toString(16)}:${(value % 65536).toString(16)}`;
  /** IPv6 loopback, unique-local, link-local, site-local and multicast, in full or short form. */
  const nonPublicIPv6 = fc
    .tuple(
      fc.oneof(
        fc.integer({ min: 0xfc00, max: 0xfdff }),
        fc.integer({ min: 0xfe80, max: 0xfeff }),
        fc.integer({ min: 0xff00, max: 0xffff }),
      ),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 7, maxLength: 7 }),
      fc.boolean(),
    )
    .map(([first, rest, upper]) => {
      const text = [first, ...rest].map((piece) => piece.toString(16)).join(":");
      return `[${upper ? text.toUpperCase() : text}]`;
    });

  /** A non-public destination as a URL may name it, with spellings of the same address. */
  const destination = fc.oneof(
    nonPublicIPv4.chain((value) =>
      fc.record({
        host: ipv4Notation(value),
        sameAddress: fc.array(ipv4Notation(value), { maxLength: 2 }),
        otherAddresses: fc.array(
          fc.oneof(
            ipv4Notation((value + 1) % 2 ** 32),
            fc.constantFrom(
              `[::ffff:${dotted(value)}]`,
              `[::ffff:0:${dotted(value)}]`,
              `[64:ff9b::${hexPair(value)}]`,
              `[2002:${hexPair(value)}::1]`,
              `::${dotted(value)}`,
            ),
          ),
          { maxLength: 2 },
        ),
      }),
    ),
    nonPublicIPv4.map((value) => ({
      host: `[::ffff:${dotted(value)}]`,
      sameAddress: [`::ffff:${hexPair(value)}`, `[0:0:0:0:0:ffff:${dotted(value)}]`],
      otherAddresses: [dotted(value), `[::${dotted(value)}]`],
    })),
    nonPublicIPv6.map((host) => ({
      host,
      sameAddress: [host.toLowerCase(), host.slice(1, -1).toUpperCase()],
      otherAddresses: [host.replace(/^\[[0-9a-f]+/i, "[2001")],
    })),
    fc.constantFrom("[::1]", "[0:0:0:0:0:0:0:1]", "[::]", "[0::0:1]").map((host) => ({
      host,
      sameAddress: ["::1", "[0::1]"],
      otherAddresses: ["127.0.0.1", "[::2]", "[::ffff:127.0.0.1]"],
    })),
  );

  /** Entries that allow much, yet name no address: no wildcard may reach a private network. */
  const wildcard = fc.constantFrom(
    "*",
    "*.x.com",
    "x.com",
    "api.*",
    "api.x.com",
    "API.X.COM.",
    "*.0.0.1",
    "127.*",
    "10.*",
    "localhost",
    "8.8.8.8",
    "[2606:4700::1111]",
  );

  const allowedHostsFor = (case_: { sameAddress: string[]; otherAddresses: string[] }) =>
    fc
      .tuple(
        fc.array(fc.oneof(wildcard, fc.constantFrom(...case_.otherAddresses, "*")), {
          maxLength: 4,
        }),
        fc.subarray(case_.sameAddress),
      )
      .chain(([others, same]) => fc.shuffledSubarray([...others, ...same], { minLength: 0 }));

  /** The address a URL reaches for an entry or host, as the URL parser writes it. */
  const urlAddress = (text: string) =>
    urlHostname(text.includes(":") && !text.startsWith("[") ? `[${text}]` : text)?.replace(
      /\.$/,
      "",
    ) ?? null;

  const cases = destination.chain((case_) =>
    allowedHostsFor(case_).map((allowed) => ({ host: case_.host, allowed })),
  );

  it("no allowedHosts entry but the literal address lets a request reach a non-public address", () => {
    fc.assert(
      fc.property(cases, ({ host, allowed }) => {
        const url = new URL(`http://${host}/`);
        const address = url.hostname.replace(/^\[|\]$/g, "");
        expect(classifyAddress(address), host).not.toBe("public");
        const listed = allowed.some((entry) => urlAddress(entry) === url.hostname);
        let refused = false;
        try {
          refuseDestination(url, allowed);
        } catch (error) {
          expect(error).toBeInstanceOf(PermissionDeniedError);
          refused = true;
        }
        expect(refused, `${host} with ${JSON.stringify(allowed)}`).toBe(!listed);
      }),
      { numRuns: fuzzRuns(500) },
    );
  });

  it("a name that resolves to a non-public address is refused unless the name or the address is listed", () => {
    fc.assert(
      fc.property(cases, ({ host, allowed }) => {
        const hostname = new URL(`http://${host}/`).hostname;
        const address = hostname.replace(/^\[|\]$/g, "");
        const listed = allowed.some(
          (entry) => urlAddress(entry) === hostname || urlAddress(entry) === "api.x.com",
        );
        expect(isRefusedResolvedAddress(address, "api.x.com", allowed)).toBe(!listed);
      }),
      { numRuns: fuzzRuns(500) },
    );
  });
});

describe("isRefusedResolvedAddress", () => {
  it("refuses a name that resolves to a private address unless name or address is listed", () => {
    expect(isRefusedResolvedAddress("10.0.0.7", "api.x.com", ["*.x.com"])).toBe(true);
    expect(isRefusedResolvedAddress("10.0.0.7", "api.x.com", ["x.com"])).toBe(true);
    expect(isRefusedResolvedAddress("10.0.0.7", "api.x.com", ["*"])).toBe(true);
    expect(isRefusedResolvedAddress("10.0.0.7", "api.x.com", ["api.x.com"])).toBe(false);
    expect(isRefusedResolvedAddress("10.0.0.7", "API.x.com.", ["api.x.com"])).toBe(false);
    expect(isRefusedResolvedAddress("10.0.0.7", "api.x.com", ["10.0.0.7"])).toBe(false);
    expect(isRefusedResolvedAddress("::ffff:10.0.0.7", "api.x.com", ["*"])).toBe(true);
    expect(isRefusedResolvedAddress("fe80::1%eth0", "api.x.com", ["*"])).toBe(true);
  });

  it("lets public addresses through and refuses what is no address", () => {
    expect(isRefusedResolvedAddress("93.184.215.14", "example.com", ["example.com"])).toBe(false);
    expect(isRefusedResolvedAddress("2606:2800:21f:cb07:6820:80da:af6b:8b2c", "x.com", [])).toBe(
      false,
    );
    expect(isRefusedResolvedAddress("not-an-ip", "x.com", ["x.com"])).toBe(true);
  });

  it("says which name resolved to what", () => {
    expect(resolvedAddressRefusal("127.0.0.1", "evil.x.com", ["*.x.com"])).toBe(
      '"evil.x.com" resolved to 127.0.0.1, a loopback address; list "evil.x.com" or "127.0.0.1" exactly in allowedHosts to allow it (wildcards and "*" do not)',
    );
  });
});
