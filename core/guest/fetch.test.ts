import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { createSandbox, type FetchReply, type GuestSandbox } from "./test-context.ts";

interface SentRequest {
  id: number;
  method: string;
  url: string;
  headers: [string, string][];
  redirect: string;
  body: Uint8Array | null;
}

const sent: SentRequest[] = [];
const aborted: number[] = [];
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

function reply(
  status: number,
  headers: [string, string][],
  body: Uint8Array | string,
  extra = {},
): FetchReply {
  return {
    meta: JSON.stringify({
      status,
      statusText: status === 200 ? "OK" : "",
      url: "",
      redirected: false,
      headers,
      ...extra,
    }),
    body: typeof body === "string" ? new TextEncoder().encode(body) : body,
  };
}

/** The test double for the host: a few fixed routes, like a tiny server behind the policy. */
function answer(requestJson: string, body: Uint8Array | null): Promise<FetchReply> | FetchReply {
  const request = { ...JSON.parse(requestJson), body } as SentRequest;
  sent.push(request);
  const url = new URL(request.url);
  if (url.hostname === "evil.com") {
    throw new Error('host "evil.com" is not in allowedHosts (allowed: "api.test")');
  }
  if (url.hostname === "slow.test") return new Promise(() => {});
  switch (url.pathname) {
    case "/echo":
      return reply(200, [["content-type", "application/octet-stream"]], body ?? new Uint8Array(0));
    case "/bytes":
      return reply(200, [], ALL_BYTES);
    case "/json":
      return reply(
        200,
        [
          ["Content-Type", "application/json"],
          ["Set-Cookie", "a=1"],
          ["set-cookie", "b=2"],
          ["X-Multi", "one"],
          ["x-multi", "two"],
        ],
        JSON.stringify({ hello: "wörld" }),
        { url: request.url, redirected: true },
      );
    case "/empty":
      return reply(204, [], "");
    default:
      return reply(404, [], "not found");
  }
}

let s: GuestSandbox;
beforeAll(async () => {
  s = await createSandbox({ fetch: answer, abortFetch: (id) => aborted.push(id) });
});
afterAll(() => s.dispose());
beforeEach(() => {
  sent.length = 0;
  aborted.length = 0;
});

const run = (code: string) => s.runAsync(`(async () => { ${code} })()`);
/** `[name, message, cause message?]` of what the async code threw. */
const rejection = (code: string) =>
  run(
    `try { ${code}; return null; } catch (e) { return [e.name, e.message, e.cause?.message ?? null]; }`,
  );

describe("fetch over the bridge", () => {
  test("loads lazily as one chunk and resolves a Response from the host's reply", async () => {
    const fresh = await createSandbox({ fetch: answer });
    try {
      expect(fresh.run(`typeof fetch`)).toBe("function");
      expect(fresh.loadedChunks).toEqual(["fetch"]);
    } finally {
      fresh.dispose();
    }
    const result = await run(`
      const r = await fetch("https://api.test/json#frag", { headers: { "X-Key": "k" } });
      return [r.status, r.ok, r.statusText, r.url, r.redirected, r.type, r.headers.get("content-type"),
        r.headers.get("X-MULTI"), r.headers.getSetCookie(), [...r.headers.keys()], await r.json(), r.bodyUsed,
        r instanceof Response];`);
    expect(result).toEqual([
      200,
      true,
      "OK",
      "https://api.test/json",
      true,
      "basic",
      "application/json",
      "one, two",
      ["a=1", "b=2"],
      ["content-type", "set-cookie", "set-cookie", "x-multi"],
      { hello: "wörld" },
      true,
      true,
    ]);
    expect(sent).toEqual([
      {
        id: expect.any(Number),
        method: "GET",
        url: "https://api.test/json",
        headers: [["x-key", "k"]],
        redirect: "follow",
        body: null,
      },
    ]);
  });

  test("all 256 byte values survive both ways", async () => {
    const result = await run(`
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const echoed = new Uint8Array(await (await fetch("https://api.test/echo", { method: "POST", body: bytes })).arrayBuffer());
      const fixed = await (await fetch("https://api.test/bytes")).bytes();
      return [Array.from(echoed).every((b, i) => b === i) && echoed.length, Array.from(fixed).every((b, i) => b === i) && fixed.length];`);
    expect(result).toEqual([256, 256]);
    expect(sent[0]?.body).toEqual(ALL_BYTES);
  });

  test("request bodies from every kind of value, with the content type the spec gives", async () => {
    await run(`
      const post = (body, headers) => fetch("https://api.test/echo", { method: "POST", body, headers });
      await post("héllo");
      await post(new Uint16Array([1, 2, 3]).subarray(1));
      await post(new Uint8Array([9, 8, 7]).buffer);
      await post(new URLSearchParams({ q: "a b", r: "&" }));
      await post(new Blob(["x", new Uint8Array([0, 255])], { type: "Application/X-Thing" }));
      await post("{}", { "content-type": "application/json" });
      const form = new FormData();
      form.append("name", "v\\nalue");
      form.append("file", new Blob([new Uint8Array([0, 1, 2, 255])], { type: "image/png" }), "a.png");
      form.append("plain", new Blob(["text"]));
      await post(form);`);
    const contentType = (index: number) =>
      sent[index]?.headers.find(([name]) => name === "content-type")?.[1];
    const text = (index: number) => new TextDecoder().decode(sent[index]?.body ?? new Uint8Array());
    expect([contentType(0), text(0)]).toEqual(["text/plain;charset=UTF-8", "héllo"]);
    expect(sent[1]?.body).toEqual(new Uint8Array([2, 0, 3, 0]));
    expect([contentType(1), contentType(2)]).toEqual([undefined, undefined]);
    expect(sent[2]?.body).toEqual(new Uint8Array([9, 8, 7]));
    expect([contentType(3), text(3)]).toEqual([
      "application/x-www-form-urlencoded;charset=UTF-8",
      "q=a+b&r=%26",
    ]);
    expect([contentType(4), Array.from(sent[4]?.body ?? [])]).toEqual([
      "application/x-thing",
      [120, 0, 255],
    ]);
    expect(contentType(5)).toBe("application/json");
    // Node's own fetch implementation parses what the guest encoded.
    const form = await new Response(sent[6]?.body as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": contentType(6) ?? "" },
    }).formData();
    expect(form.get("name")).toBe("v\r\nalue");
    const file = form.get("file") as File;
    expect([file.name, file.type, Array.from(new Uint8Array(await file.arrayBuffer()))]).toEqual([
      "a.png",
      "image/png",
      [0, 1, 2, 255],
    ]);
    expect((form.get("plain") as File).name).toBe("blob");
    expect(contentType(6)).toMatch(
      /^multipart\/form-data; boundary=----formdata-capsule-[0-9a-f]{24}$/,
    );
  });

  test("a host refusal is TypeError: fetch failed, saying why, with the host's error as cause", async () => {
    expect(await rejection(`await fetch("https://evil.com/x")`)).toEqual([
      "TypeError",
      'fetch failed: host "evil.com" is not in allowedHosts (allowed: "api.test")',
      'host "evil.com" is not in allowedHosts (allowed: "api.test")',
    ]);
  });

  test("invalid requests reject before reaching the host", async () => {
    expect(await rejection(`await fetch("/relative")`)).toEqual([
      "TypeError",
      "Failed to parse URL from /relative",
      expect.any(String),
    ]);
    expect(
      await rejection(`await fetch("https://api.test/", { method: "GET", body: "x" })`),
    ).toEqual(["TypeError", "Request with GET method cannot have body", null]);
    expect(await rejection(`await fetch("https://u:p@api.test/")`)).toEqual([
      "TypeError",
      expect.stringContaining("includes credentials"),
      null,
    ]);
    expect(await rejection(`await fetch("https://api.test/", { method: "CONNECT" })`)).toEqual([
      "TypeError",
      'Request: method "CONNECT" is not allowed',
      null,
    ]);
    expect(sent).toEqual([]);
  });

  test("methods are normalised as the spec says; Request objects work as input", async () => {
    await run(`
      await fetch("https://api.test/echo", { method: "post", body: "a" });
      await fetch("https://api.test/echo", { method: "patch", body: "b" });
      const request = new Request("https://api.test/echo", { method: "PUT", body: "c", headers: { A: "1" }, redirect: "manual" });
      await fetch(request);`);
    expect(sent.map((r) => [r.method, r.redirect, r.headers])).toEqual([
      ["POST", "follow", [["content-type", "text/plain;charset=UTF-8"]]],
      ["patch", "follow", [["content-type", "text/plain;charset=UTF-8"]]],
      [
        "PUT",
        "manual",
        [
          ["a", "1"],
          ["content-type", "text/plain;charset=UTF-8"],
        ],
      ],
    ]);
  });

  test("204 and HEAD responses have a null body", async () => {
    expect(
      await run(`const r = await fetch("https://api.test/empty");
        const h = await fetch("https://api.test/bytes", { method: "HEAD" });
        return [r.status, r.body, await r.text(), h.body, r.ok];`),
    ).toEqual([204, null, "", null, true]);
  });
});

describe("abort", () => {
  test("aborting a pending fetch tells the host and rejects with the signal's reason", async () => {
    const result = await run(`
      const controller = new AbortController();
      const pending = fetch("https://slow.test/", { signal: controller.signal });
      await null;
      controller.abort();
      try { await pending; } catch (e) {
        return [e instanceof DOMException, e.name, e.message, e.code, controller.signal.reason === e];
      }`);
    expect(result).toEqual([true, "AbortError", "This operation was aborted", 20, true]);
    expect(aborted).toEqual([sent[0]?.id]);
  });

  test("a custom reason, an already-aborted signal and AbortSignal.timeout", async () => {
    expect(
      await rejection(`const c = new AbortController(); const p = fetch("https://slow.test/", { signal: c.signal });
        c.abort(new RangeError("enough")); await p;`),
    ).toEqual(["RangeError", "enough", null]);
    expect(
      await rejection(`await fetch("https://api.test/bytes", { signal: AbortSignal.abort() })`),
    ).toEqual(["AbortError", "This operation was aborted", null]);
    expect(sent).toHaveLength(1);
    expect(
      await rejection(`await fetch("https://slow.test/", { signal: AbortSignal.timeout(5) })`),
    ).toEqual(["TimeoutError", "The operation was aborted due to timeout", null]);
    expect(aborted).toHaveLength(2);
  });

  test("AbortSignal: events, onabort, once, throwIfAborted, any", async () => {
    const result = await run(`
      const log = [];
      const c = new AbortController();
      const { signal } = c;
      signal.onabort = (e) => log.push("onabort:" + e.type);
      signal.addEventListener("abort", (e) => log.push("listener:" + (e.target === signal)), { once: true });
      const removed = () => log.push("removed");
      signal.addEventListener("abort", removed);
      signal.removeEventListener("abort", removed);
      const other = new AbortController();
      const any = AbortSignal.any([other.signal, signal]);
      log.push(signal.aborted, any.aborted);
      signal.throwIfAborted();
      c.abort("why");
      c.abort("again");
      log.push(signal.aborted, signal.reason, any.reason);
      try { signal.throwIfAborted(); } catch (e) { log.push("threw:" + e); }
      try { new AbortSignal(); } catch (e) { log.push(e.name); }
      const target = new EventTarget();
      target.addEventListener("ping", { handleEvent: (e) => log.push("handle:" + e.type) });
      log.push(target.dispatchEvent(new Event("ping", { cancelable: true })));
      log.push(Object.prototype.toString.call(signal), signal instanceof EventTarget);
      return log;`);
    expect(result).toEqual([
      false,
      false,
      "onabort:abort",
      "listener:true",
      true,
      "why",
      "why",
      "threw:why",
      "TypeError",
      "handle:ping",
      true,
      "[object AbortSignal]",
      true,
    ]);
  });

  test("a throwing listener is reported, and the others still run", async () => {
    const before = s.output("error").length;
    expect(
      await run(`const log = []; const c = new AbortController();
        c.signal.addEventListener("abort", () => { throw new Error("listener broke"); });
        c.signal.addEventListener("abort", () => log.push("second"));
        c.abort(); return log;`),
    ).toEqual(["second"]);
    expect(s.output("error").slice(before).join("\n")).toContain("listener broke");
  });
});

describe("Response, Request, Headers, bodies", () => {
  test("a body is read once; clone before reading gives two readers", async () => {
    const result = await run(`
      const r = new Response("abc");
      const copy = r.clone();
      const out = [await r.text(), r.bodyUsed];
      try { await r.text(); } catch (e) { out.push(e.name, e.message); }
      try { r.clone(); } catch (e) { out.push(e.name); }
      out.push(await copy.arrayBuffer().then((b) => b.byteLength));
      return out;`);
    expect(result).toEqual([
      "abc",
      true,
      "TypeError",
      "Response.text: Body is unusable: Body has already been read",
      "TypeError",
      3,
    ]);
  });

  test("static json, error, redirect; status checks", async () => {
    const result = await run(`
      const j = Response.json({ a: [1] }, { status: 201, headers: { "x-a": "b" } });
      const e = Response.error();
      const r = Response.redirect("https://x.test/next", 307);
      const out = [j.status, j.headers.get("content-type"), j.headers.get("x-a"), await j.json(),
        e.type, e.status, r.status, r.headers.get("location")];
      for (const bad of [() => new Response("", { status: 600 }), () => new Response("x", { status: 204 }),
        () => Response.redirect("https://x/", 200), () => e.headers.set("a", "b")]) {
        try { bad(); out.push("no error"); } catch (err) { out.push(err.name); }
      }
      return out;`);
    expect(result).toEqual([
      201,
      "application/json",
      "b",
      { a: [1] },
      "error",
      0,
      307,
      "https://x.test/next",
      "RangeError",
      "TypeError",
      "RangeError",
      "TypeError",
    ]);
  });

  test("fetched responses have immutable headers", async () => {
    expect(
      await rejection(`(await fetch("https://api.test/bytes")).headers.set("a", "b")`),
    ).toEqual(["TypeError", "Headers: these headers are immutable", null]);
  });

  test("Headers: case-insensitive, combined, sorted, validated", async () => {
    const result = await run(`
      const h = new Headers([["B", "2"], ["a", " 1 "]]);
      h.append("b", "3"); h.append("Set-Cookie", "x=1"); h.append("set-cookie", "y=2");
      const out = [h.get("A"), h.get("b"), h.has("B"), h.get("none"), [...h], h.getSetCookie()];
      h.delete("B"); h.set("a", "z");
      out.push([...h.entries()]);
      for (const bad of [() => h.set("bad name", "x"), () => h.set("x", "a\\r\\nb"), () => new Headers([["only-one"]])]) {
        try { bad(); } catch (e) { out.push(e.name); }
      }
      const seen = []; new Headers({ K: "v" }).forEach((v, k) => seen.push(k + "=" + v));
      out.push(seen);
      return out;`);
    expect(result).toEqual([
      "1",
      "2, 3",
      true,
      null,
      [
        ["a", "1"],
        ["b", "2, 3"],
        ["set-cookie", "x=1"],
        ["set-cookie", "y=2"],
      ],
      ["x=1", "y=2"],
      [
        ["a", "z"],
        ["set-cookie", "x=1"],
        ["set-cookie", "y=2"],
      ],
      "TypeError",
      "TypeError",
      "TypeError",
      ["k=v"],
    ]);
  });

  test("Request: properties, clone, body transfer", async () => {
    const result = await run(`
      const c = new AbortController();
      const a = new Request("https://api.test/p?q#h", { method: "post", body: "x", signal: c.signal });
      const b = a.clone();
      const out = [a.method, a.url, a.redirect, a.headers.get("content-type"), await b.text(), a.bodyUsed];
      const moved = new Request(a);
      out.push(a.bodyUsed, await moved.text(), moved.signal.aborted);
      c.abort();
      out.push(moved.signal.aborted, b.signal.aborted);
      try { new Request(a); } catch (e) { out.push(e.name); }
      return out;`);
    expect(result).toEqual([
      "POST",
      "https://api.test/p?q#h",
      "follow",
      "text/plain;charset=UTF-8",
      "x",
      false,
      true,
      "x",
      false,
      true,
      true,
      "TypeError",
    ]);
  });

  test("body as a stream: getReader and for await", async () => {
    const result = await run(`
      const r = new Response(new Uint8Array([1, 2, 3]));
      const reader = r.body.getReader();
      const first = await reader.read();
      const second = await reader.read();
      const out = [Array.from(first.value), first.done, second.done, r.bodyUsed];
      const chunks = [];
      for await (const chunk of new Response("hi").body) chunks.push(chunk.length);
      out.push(chunks, await new Response(new Response("piped").body).text());
      out.push(await new Response(new Blob(["from blob"]).stream()).text());
      return out;`);
    expect(result).toEqual([[1, 2, 3], false, true, true, [2], "piped", "from blob"]);
  });

  test("blob(), formData() from multipart and urlencoded bodies", async () => {
    const result = await run(`
      const form = new FormData();
      form.append("a", "1"); form.append("a", "2");
      form.set("f", new File(["content"], "f.txt", { type: "text/plain" }));
      const parsed = await new Response(form).formData();
      const f = parsed.get("f");
      const out = [parsed.getAll("a"), f.name, f.type, await f.text(), f instanceof File, f instanceof Blob];
      const url = await new Response(new URLSearchParams("x=1&y=%20")).formData();
      out.push([...url]);
      const blob = await Response.json([1]).blob();
      out.push(blob.type, blob.size, await blob.slice(1, 2).text());
      try { await new Response("plain").formData(); } catch (e) { out.push(e.name); }
      return out;`);
    expect(result).toEqual([
      ["1", "2"],
      "f.txt",
      "text/plain",
      "content",
      true,
      true,
      [
        ["x", "1"],
        ["y", " "],
      ],
      "application/json",
      3,
      "1",
      "TypeError",
    ]);
  });
});
