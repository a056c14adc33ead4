import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createSandbox, type GuestSandbox } from "./test-context.ts";

let s: GuestSandbox;
beforeAll(async () => {
  s = await createSandbox();
});
afterAll(() => s.dispose());

/** Runs `code` in the guest and returns `[error name, message]` of what it threw, or null. */
const thrown = (code: string) =>
  s.run(
    `(() => { try { ${code}; return null; } catch (e) { return [e.name, e.message, e instanceof Error]; } })()`,
  );

describe("URL and URLSearchParams", () => {
  test("parse and resolve relative references like Node", () => {
    const cases: [string, string?][] = [
      ["../b/c?x=1&y=2#h", "https://user:pw@EXAMPLE.com:443/a/b/"],
      ["//other.org/p", "http://a.com/x"],
      ["?q=1", "http://a.com/path/file"],
      ["HTTP://EX.com/%7efoo/./bar/../baz"],
      ["http://[::1]:80/"],
      ["file:///C:/x/../y"],
      ["http://münchen.de/ä?q=ü"],
      ["mailto:someone@example.com"],
      ["http://a.com:8080/ path with space"],
    ];
    for (const [input, base] of cases) {
      const expected = new URL(input, base);
      const actual =
        s.run(`(() => { const u = new URL(${JSON.stringify(input)}, ${JSON.stringify(base)});
        return [u.href, u.origin, u.protocol, u.host, u.hostname, u.port, u.pathname, u.search, u.hash, u.username, u.password]; })()`);
      expect(actual, input).toEqual([
        expected.href,
        expected.origin,
        expected.protocol,
        expected.host,
        expected.hostname,
        expected.port,
        expected.pathname,
        expected.search,
        expected.hash,
        expected.username,
        expected.password,
      ]);
    }
  });

  test("rejects invalid input with a TypeError; canParse agrees", () => {
    expect(thrown(`new URL("not a url")`)).toEqual(["TypeError", expect.any(String), true]);
    expect(thrown(`new URL("/relative")`)).toEqual(["TypeError", expect.any(String), true]);
    expect(
      s.run(`[URL.canParse("http://x"), URL.canParse("nope"), URL.canParse("/p", "http://x")]`),
    ).toEqual([true, false, true]);
  });

  test("searchParams mutation writes through to the URL", () => {
    expect(
      s.run(`(() => {
        const u = new URL("https://a.com/p?x=1&y=2&x=3");
        const out = [u.searchParams.getAll("x").join(",")];
        u.searchParams.append("z", "a b&c=d");
        u.searchParams.delete("y");
        u.searchParams.set("x", "é");
        out.push(u.href, u.searchParams.toString(), u.searchParams.has("z"), [...u.searchParams.keys()].join());
        u.search = "?k=v";
        out.push(u.searchParams.get("k"));
        u.searchParams.sort();
        u.hash = "frag"; u.pathname = "/new path"; u.port = "8443";
        out.push(u.href, JSON.stringify(u), String(u));
        return out;
      })()`),
    ).toEqual([
      "1,3",
      "https://a.com/p?x=%C3%A9&z=a+b%26c%3Dd",
      "x=%C3%A9&z=a+b%26c%3Dd",
      true,
      "x,z",
      "v",
      "https://a.com:8443/new%20path?k=v#frag",
      '"https://a.com:8443/new%20path?k=v#frag"',
      "https://a.com:8443/new%20path?k=v#frag",
    ]);
  });

  test("URLSearchParams from strings, records and pairs", () => {
    expect(
      s.run(`[
        new URLSearchParams("?a=1&b=%20two+three").get("b"),
        new URLSearchParams({ a: "1", b: "2" }).toString(),
        new URLSearchParams([["a", "1"], ["a", "2"]]).getAll("a"),
        [...new URLSearchParams("a=1&b=2").entries()],
        new URLSearchParams("x=1").size,
      ]`),
    ).toEqual([
      " two three",
      "a=1&b=2",
      ["1", "2"],
      [
        ["a", "1"],
        ["b", "2"],
      ],
      1,
    ]);
  });
});

describe("TextEncoder and TextDecoder", () => {
  test("round-trip multi-byte text and match Node's bytes", () => {
    const text = "héllo wörld € 𝄞 日本語 \u0000";
    const bytes = s.run(`Array.from(new TextEncoder().encode(${JSON.stringify(text)}))`);
    expect(bytes).toEqual(Array.from(new TextEncoder().encode(text)));
    // JSON, because the harness reads guest strings as C strings (they would stop at U+0000).
    expect(
      s.run(
        `JSON.stringify(new TextDecoder().decode(new TextEncoder().encode(${JSON.stringify(text)})))`,
      ),
    ).toBe(JSON.stringify(text));
    expect(
      s.run(
        `[new TextEncoder().encoding, new TextDecoder().encoding, new TextDecoder("UTF8").encoding]`,
      ),
    ).toEqual(["utf-8", "utf-8", "utf-8"]);
  });

  test("invalid sequences become U+FFFD, or throw with fatal", () => {
    const invalid = [0x61, 0xff, 0x62, 0xe2, 0x82, 0x63, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98];
    expect(s.run(`new TextDecoder().decode(new Uint8Array(${JSON.stringify(invalid)}))`)).toBe(
      new TextDecoder().decode(new Uint8Array(invalid)),
    );
    expect(
      thrown(`new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff]))`),
    ).toEqual(["TypeError", expect.any(String), true]);
    expect(
      s.run(`[new TextDecoder("utf-8", { fatal: true }).fatal, new TextDecoder().fatal]`),
    ).toEqual([true, false]);
  });

  test("BOM handling and streaming decode", () => {
    expect(
      s.run(`(() => {
        const bom = new Uint8Array([0xef, 0xbb, 0xbf, 0x41]);
        const d = new TextDecoder();
        const euro = new TextEncoder().encode("€€");
        const stream = [d.decode(euro.subarray(0, 2), { stream: true }), d.decode(euro.subarray(2, 4), { stream: true }), d.decode(euro.subarray(4))];
        return [new TextDecoder().decode(bom), new TextDecoder("utf-8", { ignoreBOM: true }).decode(bom).length,
          new TextDecoder("utf-8", { ignoreBOM: true }).ignoreBOM, stream, new TextDecoder().decode(new Uint8Array([0xe2, 0x82]))];
      })()`),
    ).toEqual(["A", 2, true, ["", "€", "€"], "\ufffd"]);
  });

  test("encodeInto fills in place and reports progress; decode accepts buffers and views", () => {
    expect(
      s.run(`(() => {
        const target = new Uint8Array(5);
        const r = new TextEncoder().encodeInto("a€b", target);
        const small = new TextEncoder().encodeInto("€€", new Uint8Array(4));
        const buf = new TextEncoder().encode("xyz").buffer;
        return [r.read, r.written, Array.from(target), small.read, small.written,
          new TextDecoder().decode(buf), new TextDecoder().decode(new DataView(buf, 1)), new TextDecoder().decode()];
      })()`),
    ).toEqual([3, 5, [0x61, 0xe2, 0x82, 0xac, 0x62], 1, 3, "xyz", "yz", ""]);
  });
});

describe("structuredClone", () => {
  test("clones Map, Set, Date, RegExp, typed arrays, errors and cycles", () => {
    expect(
      s.run(`(() => {
        const src = { m: new Map([["k", { v: 1 }]]), s: new Set([1, "2"]), d: new Date(86400000), re: /x+/gi,
          u8: new Uint8Array([1, 2, 3]), big: 12n, err: new RangeError("r"), nested: { arr: [1, [2]] } };
        src.self = src;
        src.nested.back = src.m;
        const c = structuredClone(src);
        return [c !== src, c.self === c, c.nested.back === c.m, c.m instanceof Map, c.m.get("k").v, c.m.get("k") !== src.m.get("k"),
          c.s instanceof Set, [...c.s], c.d instanceof Date, c.d.getTime(), String(c.re), c.u8 instanceof Uint8Array, Array.from(c.u8),
          String(c.big) + typeof c.big, c.err instanceof RangeError, c.err.message, c.nested.arr[1][0]];
      })()`),
    ).toEqual([
      true,
      true,
      true,
      true,
      1,
      true,
      true,
      [1, "2"],
      true,
      86400000,
      "/x+/gi",
      true,
      [1, 2, 3],
      "12bigint",
      true,
      "r",
      2,
    ]);
  });

  test("drops prototypes like the real algorithm", () => {
    expect(
      s.run(
        `(() => { class P { constructor() { this.x = 1 } }; const c = structuredClone(new P()); return [c.x, c instanceof P]; })()`,
      ),
    ).toEqual([1, false]);
  });

  test("throws a DataCloneError DOMException for functions and symbols", () => {
    expect(thrown(`structuredClone({ f() {} })`)).toEqual([
      "DataCloneError",
      expect.stringMatching(/could not be cloned/),
      true,
    ]);
    expect(thrown(`structuredClone(Symbol("s"))`)).toEqual([
      "DataCloneError",
      expect.stringMatching(/could not be cloned/),
      true,
    ]);
    expect(
      s.run(
        `(() => { try { structuredClone(() => 1) } catch (e) { return [e instanceof DOMException, e.code] } })()`,
      ),
    ).toEqual([true, 25]);
    expect(thrown(`structuredClone()`)).toEqual(["TypeError", expect.any(String), true]);
  });
});

describe("atob and btoa", () => {
  test("agree with Node on valid input, including forgiving whitespace and padding", () => {
    for (const text of [
      "",
      "f",
      "fo",
      "foo",
      "foob",
      "fooba",
      "foobar",
      "\u0000\u00ff\u0080 latin1 ÿ",
    ]) {
      expect(s.run(`btoa(${JSON.stringify(text)})`), text).toBe(btoa(text));
    }
    for (const encoded of ["Zm9vYmFy", "Zm9vYg==", "Zm9vYg", " Zm9v\nYmE=\t", "", "YQ"]) {
      expect(s.run(`atob(${JSON.stringify(encoded)})`), encoded).toBe(atob(encoded));
    }
    expect(s.run(`[btoa(123), atob(null === null ? "bnVsbA" : "")]`)).toEqual([
      btoa("123"),
      "null",
    ]);
  });

  test("throw InvalidCharacterError like browsers", () => {
    expect(thrown(`btoa("€")`)).toEqual([
      "InvalidCharacterError",
      expect.stringMatching(/Invalid character/),
      true,
    ]);
    for (const bad of ["a", "Zm9v!", "Zm9vY===", "Zm=9v", "abcde"]) {
      expect(thrown(`atob(${JSON.stringify(bad)})`), bad).toEqual([
        "InvalidCharacterError",
        "The string to be decoded is not correctly encoded.",
        true,
      ]);
    }
    expect(
      s.run(
        `(() => { try { atob("*") } catch (e) { return [e instanceof DOMException, e.code] } })()`,
      ),
    ).toEqual([true, 5]);
    expect(thrown(`atob()`)).toEqual([
      "TypeError",
      expect.stringMatching(/1 argument required/),
      true,
    ]);
  });
});

describe("crypto", () => {
  test("getRandomValues fills integer arrays in place and returns them", () => {
    expect(
      s.run(`(() => {
        const a = new Uint8Array(64);
        const same = crypto.getRandomValues(a) === a;
        const b = new BigUint64Array(2);
        crypto.getRandomValues(b);
        const view = new Uint8Array(new ArrayBuffer(16), 4, 8);
        crypto.getRandomValues(view);
        const whole = new Uint8Array(view.buffer);
        return [same, a.some((x) => x !== 0), typeof b[0], whole.slice(0, 4).every((x) => x === 0) && whole.slice(12).every((x) => x === 0),
          crypto.getRandomValues(new Int32Array(16384)).length, crypto.getRandomValues(new Uint8Array(0)).length];
      })()`),
    ).toEqual([true, true, "bigint", true, 16384, 0]);
  });

  test("getRandomValues refuses float arrays, non-arrays and more than 65536 bytes", () => {
    expect(thrown(`crypto.getRandomValues(new Float32Array(4))`)).toEqual([
      "TypeMismatchError",
      expect.any(String),
      true,
    ]);
    expect(thrown(`crypto.getRandomValues(new DataView(new ArrayBuffer(4)))`)).toEqual([
      "TypeMismatchError",
      expect.any(String),
      true,
    ]);
    expect(thrown(`crypto.getRandomValues([1, 2])`)).toEqual([
      "TypeMismatchError",
      expect.any(String),
      true,
    ]);
    expect(thrown(`crypto.getRandomValues(new Uint8Array(65537))`)).toEqual([
      "QuotaExceededError",
      expect.stringMatching(/65537.*65536/),
      true,
    ]);
    expect(thrown(`crypto.getRandomValues(new Uint32Array(16385))`)).toEqual([
      "QuotaExceededError",
      expect.any(String),
      true,
    ]);
  });

  test("randomUUID gives distinct version 4 UUIDs", () => {
    const ids = s.run(`Array.from({ length: 50 }, () => crypto.randomUUID())`) as string[];
    for (const id of ids)
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(50);
  });
});

describe("performance", () => {
  test("now() is monotonic and counts from timeOrigin", () => {
    const [first, second, origin, json] =
      s.run(`(() => { const a = performance.now(); let x = 0; for (let i = 0; i < 1e5; i++) x += i;
      return [a, performance.now(), performance.timeOrigin, JSON.stringify(performance)]; })()`) as [
        number,
        number,
        number,
        string,
      ];
    expect(second).toBeGreaterThanOrEqual(first);
    expect(first).toBeGreaterThanOrEqual(0);
    expect(Math.abs(origin + first - Date.now())).toBeLessThan(1000);
    expect(JSON.parse(json)).toEqual({ timeOrigin: origin });
  });
});

describe("DOMException", () => {
  test("has name, message, code and is an Error", () => {
    expect(
      s.run(`(() => { const e = new DOMException("gone", "AbortError"); const d = new DOMException();
        return [e.name, e.message, e.code, e instanceof Error, Object.prototype.toString.call(e), d.name, d.message, d.code, String(e)]; })()`),
    ).toEqual([
      "AbortError",
      "gone",
      20,
      true,
      "[object DOMException]",
      "Error",
      "",
      0,
      "AbortError: gone",
    ]);
  });
});
