import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { PermissionDeniedError } from "../../core/errors.ts";
import { createSandbox } from "../../core/guest/test-context.ts";
import type { FetchRequest, NetworkHost } from "../../core/host.ts";
import { HeldBytes } from "../../core/network/held-bytes.ts";
import type { HostRequest } from "../../core/runtime/envelope.ts";
import { createNodeNetwork, type NodeNetworkOptions } from "./network.ts";

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

let server: Server;
let port: number;
let base: string;
/** Requests the server saw, as "METHOD /path"; a refused request must never show up here. */
const hits: string[] = [];
const seenHeaders: Record<string, string | string[] | undefined>[] = [];
const hanging = new Set<ServerResponse>();

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function handle(request: IncomingMessage, response: ServerResponse) {
  const url = new URL(request.url ?? "/", "http://x");
  hits.push(`${request.method} ${url.pathname}`);
  seenHeaders.push(request.headers);
  const body = await readBody(request);
  switch (url.pathname) {
    case "/echo":
      response.writeHead(200, {
        "content-type": "application/octet-stream",
        "x-method": request.method,
      });
      response.end(body);
      return;
    case "/bytes":
      response.writeHead(200, [
        ["content-type", "application/octet-stream"],
        ["set-cookie", "a=1"],
        ["set-cookie", "b=2"],
      ]);
      response.end(ALL_BYTES);
      return;
    case "/redirect":
      response.writeHead(Number(url.searchParams.get("status") ?? 302), {
        location: url.searchParams.get("to") ?? "/echo",
      });
      response.end("moved");
      return;
    case "/loop":
      response.writeHead(302, { location: "/loop" });
      response.end();
      return;
    case "/big":
      response.writeHead(200, { "content-length": String(2 * 1024 * 1024) });
      response.end(Buffer.alloc(2 * 1024 * 1024));
      return;
    case "/big-slow":
      // Half the body, then the rest a little later: other requests arrive while this one is held.
      response.writeHead(200, { "content-length": String(2 * 1024 * 1024) });
      response.write(Buffer.alloc(1024 * 1024));
      setTimeout(() => response.end(Buffer.alloc(1024 * 1024)), 200);
      return;
    case "/big-redirect":
      response.writeHead(302, { location: "/bytes" });
      response.end(Buffer.alloc(2 * 1024 * 1024));
      return;
    case "/big-chunked":
      response.writeHead(200);
      for (let i = 0; i < 32; i++) response.write(Buffer.alloc(64 * 1024));
      response.end();
      return;
    case "/gzip":
      response.writeHead(200, { "content-encoding": "gzip" });
      response.end(gzipSync(Buffer.from("zipped text")));
      return;
    case "/reset":
      response.writeHead(200, { "content-length": "100" });
      response.write("partial");
      setTimeout(() => response.socket?.destroy(), 10);
      return;
    case "/hang":
      hanging.add(response);
      return;
    default:
      response.writeHead(404);
      response.end("not found");
  }
}

beforeAll(async () => {
  server = createServer((request, response) => void handle(request, response));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  for (const response of hanging) response.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  hits.length = 0;
  seenHeaders.length = 0;
});

/** A resolver for made-up names: each maps to 127.0.0.1 (the test server), no real DNS. */
const fakeResolve = async (hostname: string) => {
  if (hostname.endsWith(".test") || hostname.startsWith("api."))
    return [{ address: "127.0.0.1", family: 4 }];
  throw Object.assign(new Error(`no such host ${hostname}`), { code: "ENOTFOUND" });
};

function network(options: Partial<NodeNetworkOptions> & { allowedHosts: string[] }) {
  const records: HostRequest[] = [];
  const host = createNodeNetwork({
    resolve: fakeResolve,
    onRequest: (r) => records.push(r),
    ...options,
  });
  return { host, records };
}

function get(url: string, extra: Partial<FetchRequest> = {}): FetchRequest {
  return { method: "GET", url, headers: [], body: null, redirect: "follow", ...extra };
}

const never = new AbortController().signal;

describe("allowed requests", () => {
  test("binary bodies round-trip untouched, all 256 byte values both ways", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"] });
    const echoed = await host.fetch(
      get(`${base}/echo`, {
        method: "POST",
        body: ALL_BYTES,
        headers: [["Content-Type", "application/x-bin"]],
      }),
      never,
    );
    expect(echoed.status).toBe(200);
    expect(echoed.body).toEqual(ALL_BYTES);
    const fixed = await host.fetch(get(`${base}/bytes`), never);
    expect(fixed.body).toEqual(ALL_BYTES);
    expect(fixed.headers.filter(([name]) => name.toLowerCase() === "set-cookie")).toEqual([
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
    ]);
    expect([fixed.url, fixed.redirected, fixed.statusText]).toEqual([`${base}/bytes`, false, "OK"]);
    expect(seenHeaders[0]?.["content-type"]).toBe("application/x-bin");
    expect(seenHeaders[0]?.["content-length"]).toBe("256");
    expect(records).toEqual([
      { method: "POST", url: `${base}/echo`, status: 200, duration_ms: expect.any(Number) },
      { method: "GET", url: `${base}/bytes`, status: 200, duration_ms: expect.any(Number) },
    ]);
  });

  test("hop-by-hop request headers are dropped, others pass", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    await host.fetch(
      get(`${base}/echo`, {
        headers: [
          ["X-Custom", "1"],
          ["Connection", "x-private, keep-alive"],
          ["X-Private", "secret"],
          ["Host", "evil.com"],
          ["Transfer-Encoding", "chunked"],
        ],
      }),
      never,
    );
    const seen = seenHeaders[0] ?? {};
    expect([seen["x-custom"], seen["x-private"], seen.host, seen["transfer-encoding"]]).toEqual([
      "1",
      undefined,
      `127.0.0.1:${port}`,
      undefined,
    ]);
  });

  test("gzip responses are decoded, as fetch does", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const response = await host.fetch(get(`${base}/gzip`), never);
    expect(Buffer.from(response.body).toString()).toBe("zipped text");
  });
});

describe("host rules", () => {
  test("a host not in allowedHosts is refused before any connection, and recorded", async () => {
    const { host, records } = network({ allowedHosts: ["api.example.com"] });
    const refusal = host.fetch(get(`http://evil.test:${port}/echo`), never);
    await expect(refusal).rejects.toThrow(PermissionDeniedError);
    await expect(refusal).rejects.toThrow(
      'host "evil.test" is not in allowedHosts (allowed: "api.example.com")',
    );
    await expect(
      network({ allowedHosts: [] }).host.fetch(get(`${base}/echo`), never),
    ).rejects.toThrow(/allowedHosts is empty/);
    expect(hits).toEqual([]);
    expect(records).toEqual([
      {
        method: "GET",
        url: `http://evil.test:${port}/echo`,
        status: null,
        reason: expect.stringContaining('host "evil.test" is not in allowedHosts'),
        duration_ms: expect.any(Number),
      },
    ]);
  });

  test("wildcards: *.x one label, bare domain with subdomains, prefix.*", async () => {
    // 127.0.0.1 listed exactly lets these names reach the local test server.
    const { host } = network({ allowedHosts: ["*.wild.test", "bare.test", "api.*", "127.0.0.1"] });
    const outcome = (name: string) =>
      host.fetch(get(`http://${name}:${port}/echo`), never).then(
        (response) => response.status,
        (error: Error) => (error instanceof PermissionDeniedError ? "denied" : error.message),
      );
    expect(
      await Promise.all(
        [
          "a.wild.test",
          "wild.test",
          "a.b.wild.test",
          "bare.test",
          "deep.sub.bare.test",
          "api.x",
          "api",
          "API.Y",
        ].map(outcome),
      ),
    ).toEqual([200, "denied", "denied", 200, 200, 200, "denied", 200]);
    expect(hits).toHaveLength(5);
  });

  test("only http and https", async () => {
    const { host } = network({ allowedHosts: ["*"] });
    await expect(host.fetch(get("ftp://127.0.0.1/x"), never)).rejects.toThrow(
      /ftp URLs cannot be fetched .*only http and https/,
    );
    await expect(host.fetch(get("file:///etc/passwd"), never)).rejects.toThrow(
      PermissionDeniedError,
    );
  });
});

describe("address rules", () => {
  test("private and loopback IP literals in every notation are refused, even under *", async () => {
    const { host, records } = network({ allowedHosts: ["*"] });
    const literals = [
      "127.0.0.1",
      "2130706433",
      "0x7f.1",
      "0x7f000001",
      "0177.0.0.1",
      "127.1",
      "[::ffff:127.0.0.1]",
      "[::ffff:7f00:1]",
      "[::1]",
      "[::127.0.0.1]",
      "0.0.0.0",
      "10.1.2.3",
      "192.168.0.1",
      "172.16.5.5",
      "169.254.169.254",
      "100.64.0.1",
      "[fd00::1]",
      "[fe80::1]",
    ];
    for (const literal of literals) {
      await expect(
        host.fetch(get(`http://${literal}:${port}/echo`), never),
        literal,
      ).rejects.toThrow(PermissionDeniedError);
    }
    expect(hits).toEqual([]);
    expect(records).toHaveLength(literals.length);
    expect(records[2]?.reason).toMatch(
      /127\.0\.0\.1, a loopback address; list "127\.0\.0\.1" exactly/,
    );
    expect(records[14]?.reason).toMatch(/cloud metadata/);
  });

  test("a name that resolves to a loopback address is refused under *, allowed when listed exactly", async () => {
    const wildcard = network({ allowedHosts: ["*", "*.rebind.test"] });
    await expect(
      wildcard.host.fetch(get(`http://evil.rebind.test:${port}/echo`), never),
    ).rejects.toThrow(/"evil\.rebind\.test" resolved to 127\.0\.0\.1, a loopback address/);
    await expect(wildcard.host.fetch(get(`http://localhost:${port}/echo`), never)).rejects.toThrow(
      /"localhost" is a loopback host name/,
    );
    expect(hits).toEqual([]);
    const exact = network({ allowedHosts: ["evil.rebind.test"] });
    expect(
      (await exact.host.fetch(get(`http://evil.rebind.test:${port}/echo`), never)).status,
    ).toBe(200);
    expect(hits).toEqual(["GET /echo"]);
  });

  test("with the system resolver, localhost listed exactly connects to the checked address", async () => {
    const host = createNodeNetwork({ allowedHosts: ["localhost"] });
    const response = await host.fetch(get(`http://localhost:${port}/echo`), never).catch((e) => e);
    // Some machines resolve localhost to ::1 first; the server listens on 127.0.0.1 only.
    expect(response instanceof Error ? response.message : response.status).toSatisfy(
      (value: unknown) => value === 200 || /ECONNREFUSED/.test(String(value)),
    );
  });

  test("of several resolved addresses, only one that passed the check is connected to, resolved once", async () => {
    const lookups: string[] = [];
    const host = createNodeNetwork({
      allowedHosts: ["*", "127.0.0.1"],
      resolve: async (name) => {
        lookups.push(name);
        return [
          { address: "10.0.0.1", family: 4 },
          { address: "127.0.0.1", family: 4 },
        ];
      },
    });
    // 10.0.0.1 is refused (private, not listed); 127.0.0.1 is listed, so the socket goes there.
    expect((await host.fetch(get(`http://mixed.test:${port}/echo`), never)).status).toBe(200);
    expect(lookups).toEqual(["mixed.test"]);
    expect(hits).toEqual(["GET /echo"]);
    const refused = createNodeNetwork({
      allowedHosts: ["*"],
      resolve: async () => [{ address: "10.0.0.1", family: 4 }],
    });
    await expect(refused.fetch(get(`http://mixed.test:${port}/echo`), never)).rejects.toThrow(
      /"mixed\.test" resolved to 10\.0\.0\.1, a private-network address/,
    );
  });
});

describe("redirects", () => {
  test("each hop is checked again: a redirect to a denied host is refused and recorded", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"] });
    const to = encodeURIComponent(`http://evil.test:${port}/echo`);
    await expect(host.fetch(get(`${base}/redirect?to=${to}`), never)).rejects.toThrow(
      'host "evil.test" is not in allowedHosts',
    );
    expect(hits).toEqual(["GET /redirect"]);
    expect(records.map((r) => [r.url, r.status, r.reason ?? null])).toEqual([
      [`${base}/redirect?to=${to}`, 302, null],
      [`http://evil.test:${port}/echo`, null, expect.stringContaining("not in allowedHosts")],
    ]);
  });

  test("a redirect to a private address is refused even when the first host is allowed", async () => {
    const { host } = network({ allowedHosts: ["*", "127.0.0.1"] });
    const to = encodeURIComponent("http://169.254.169.254/latest/meta-data/");
    await expect(host.fetch(get(`${base}/redirect?to=${to}`), never)).rejects.toThrow(
      /cloud metadata address/,
    );
  });

  test("301/302/303 switch to GET without a body; 307/308 keep method and body", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const post = (status: number) =>
      host.fetch(
        get(`${base}/redirect?status=${status}&to=/echo`, {
          method: "POST",
          body: new Uint8Array([1, 2, 3]),
          headers: [["content-type", "application/x-bin"]],
        }),
        never,
      );
    const results = [];
    for (const status of [301, 302, 303, 307, 308]) {
      const response = await post(status);
      results.push([
        status,
        headerOf(response.headers, "x-method"),
        response.body.length,
        response.redirected,
      ]);
    }
    expect(results).toEqual([
      [301, "GET", 0, true],
      [302, "GET", 0, true],
      [303, "GET", 0, true],
      [307, "POST", 3, true],
      [308, "POST", 3, true],
    ]);
    expect(seenHeaders[1]?.["content-type"]).toBeUndefined();
    expect(seenHeaders[7]?.["content-type"]).toBe("application/x-bin");
  });

  test('redirect "manual" returns the 3xx, "error" rejects, and the hop limit holds', async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"], maxRedirects: 3 });
    const manual = await host.fetch(
      get(`${base}/redirect?to=/echo`, { redirect: "manual" }),
      never,
    );
    expect([manual.status, headerOf(manual.headers, "location"), manual.redirected]).toEqual([
      302,
      "/echo",
      false,
    ]);
    await expect(
      host.fetch(get(`${base}/redirect?to=/echo`, { redirect: "error" }), never),
    ).rejects.toThrow(/redirect mode is "error"/);
    hits.length = 0;
    await expect(host.fetch(get(`${base}/loop`), never)).rejects.toThrow(
      /redirected more than 3 times \(maxRedirects\)/,
    );
    expect(hits).toHaveLength(4);
  });

  test("credentials are not sent to another origin after a redirect", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1", "other.test"] });
    const to = encodeURIComponent(`http://other.test:${port}/echo`);
    await host.fetch(
      get(`${base}/redirect?to=${to}`, {
        headers: [
          ["authorization", "Bearer x"],
          ["x-keep", "1"],
        ],
      }),
      never,
    );
    expect([
      seenHeaders[0]?.authorization,
      seenHeaders[1]?.authorization,
      seenHeaders[1]?.["x-keep"],
    ]).toEqual(["Bearer x", undefined, "1"]);
  });
});

describe("bytes held for the task (its ram)", () => {
  const MIB = 1024 * 1024;

  test("a declared body larger than the budget fails at its headers, naming ram", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"] });
    const heldBytes = new HeldBytes(1 * MIB);
    await expect(host.fetch(get(`${base}/big`, { heldBytes }), never)).rejects.toThrow(
      /the response from http:\/\/127\.0\.0\.1:\d+\/big is larger than the task's ram \(1MB\)/,
    );
    expect(heldBytes.held).toBe(0);
    expect(records[0]?.reason).toMatch(/task's ram/);
  });

  test("a chunked body is counted as it arrives and given back when refused", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const heldBytes = new HeldBytes(1 * MIB);
    await expect(host.fetch(get(`${base}/big-chunked`, { heldBytes }), never)).rejects.toThrow(
      /larger than the task's ram \(1MB\)/,
    );
    expect(heldBytes.held).toBe(0);
  });

  test("concurrent requests share one budget; what one held is free again when it ends", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const heldBytes = new HeldBytes(3 * MIB);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 4 }, () => host.fetch(get(`${base}/big-slow`, { heldBytes }), never)),
    );
    const refused = outcomes.filter((o) => o.status === "rejected");
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const outcome of refused) {
      expect(String(outcome.reason)).toMatch(
        /does not fit in the task's ram \(3MB\) next to the 2\.0 MiB its other requests in flight hold/,
      );
    }
    expect(heldBytes.held).toBe(0);
    const again = await host.fetch(get(`${base}/big`, { heldBytes }), never);
    expect(again.body.length).toBe(2 * MIB);
  });

  test("a request body is held while it is sent", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const heldBytes = new HeldBytes(1 * MIB);
    const body = new Uint8Array(1 * MIB + 1);
    await expect(
      host.fetch(get(`${base}/echo`, { method: "POST", body, heldBytes }), never),
    ).rejects.toThrow(
      /the request body for .*\/echo \(1048577 bytes\) is larger than the task's ram/,
    );
    expect(hits).toEqual([]);
    const fits = await host.fetch(
      get(`${base}/echo`, { method: "POST", body: new Uint8Array(1000), heldBytes }),
      never,
    );
    expect(fits.body.length).toBe(1000);
    expect(heldBytes.held).toBe(0);
  });

  test("a redirect's body is counted while it is read and dropped before the next hop", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const small = new HeldBytes(1 * MIB);
    await expect(
      host.fetch(get(`${base}/big-redirect`, { heldBytes: small }), never),
    ).rejects.toThrow(/task's ram/);
    const enough = new HeldBytes(2 * MIB + 256);
    const response = await host.fetch(get(`${base}/big-redirect`, { heldBytes: enough }), never);
    expect([response.status, response.body.length]).toEqual([200, 256]);
    expect(enough.held).toBe(0);
  });

  test("a gzip body is counted after decoding", async () => {
    const { host } = network({ allowedHosts: ["127.0.0.1"] });
    const heldBytes = new HeldBytes(4);
    await expect(host.fetch(get(`${base}/gzip`, { heldBytes }), never)).rejects.toThrow(
      /larger than the task's ram \(4B\)/,
    );
  });
});

describe("limits", () => {
  test("a response over maxResponseBytes aborts with a clear error, with or without Content-Length", async () => {
    const { host, records } = network({
      allowedHosts: ["127.0.0.1"],
      maxResponseBytes: 1024 * 1024,
    });
    await expect(host.fetch(get(`${base}/big`), never)).rejects.toThrow(
      `the response from ${base}/big is larger than maxResponseBytes (1048576 bytes)`,
    );
    await expect(host.fetch(get(`${base}/big-chunked`), never)).rejects.toThrow(
      /larger than maxResponseBytes/,
    );
    expect(records.map((r) => r.status)).toEqual([200, 200]);
    expect((await host.fetch(get(`${base}/bytes`), never)).body.length).toBe(256);
  });

  test("a server that never answers times out", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"], requestTimeoutMs: 150 });
    const started = performance.now();
    await expect(host.fetch(get(`${base}/hang`), never)).rejects.toThrow(
      `request to ${base}/hang timed out after 150 ms (requestTimeoutMs)`,
    );
    // Far below a request left hanging (this test's own timeout), with room for a loaded machine.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(records[0]?.status).toBeNull();
  });

  test("maxRequests per host instance, every hop counted", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"], maxRequests: 3 });
    await host.fetch(get(`${base}/redirect?to=/echo`), never);
    await host.fetch(get(`${base}/echo`), never);
    await expect(host.fetch(get(`${base}/echo`), never)).rejects.toThrow(
      /at most 3 HTTP requests \(maxRequests\)/,
    );
    expect(hits).toHaveLength(3);
    expect(records.at(-1)?.status).toBeNull();
  });

  test("aborting the signal ends the request and closes the socket", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"] });
    const controller = new AbortController();
    const held = hanging.size;
    const pending = host.fetch(get(`${base}/hang`), controller.signal);
    // Once the server holds this request (however long that takes on a loaded machine).
    await vi.waitFor(() => expect(hanging.size).toBe(held + 1), { timeout: 10_000 });
    const closed = new Promise((resolve) => [...hanging].at(-1)?.on("close", resolve));
    controller.abort();
    await expect(pending).rejects.toThrow(`request to ${base}/hang was aborted`);
    await closed;
    expect(records[0]?.reason).toMatch(/was aborted/);
    const aborted = AbortSignal.abort();
    await expect(host.fetch(get(`${base}/echo`), aborted)).rejects.toThrow(/was aborted/);
  });

  test("a connection cut mid-body fails the request instead of hanging", async () => {
    const { host, records } = network({ allowedHosts: ["127.0.0.1"] });
    await expect(host.fetch(get(`${base}/reset`), never)).rejects.toThrow(
      `could not read the response from ${base}/reset`,
    );
    expect(records[0]?.status).toBe(200);
  });

  test("a resolver that never answers still times out", async () => {
    const host = createNodeNetwork({
      allowedHosts: ["*"],
      requestTimeoutMs: 100,
      resolve: () => new Promise(() => {}),
    });
    await expect(host.fetch(get("http://stuck.test/"), never)).rejects.toThrow(
      "request to http://stuck.test/ timed out after 100 ms (requestTimeoutMs)",
    );
  });

  test("bad limits are refused when the host is created", () => {
    expect(() => createNodeNetwork({ allowedHosts: [], maxRequests: -1 })).toThrow(
      "createNodeNetwork: maxRequests must be a non-negative integer, got -1",
    );
  });
});

function headerOf(headers: [string, string][], name: string): string | undefined {
  return headers.find(([key]) => key.toLowerCase() === name)?.[1];
}

/** The bridge wiring the runtime does, in small: guest request JSON in, `{meta, body}` out. */
function bridgeTo(host: NetworkHost) {
  const controllers = new Map<number, AbortController>();
  return {
    fetch: async (requestJson: string, body: Uint8Array | null) => {
      const request = JSON.parse(requestJson) as Omit<FetchRequest, "body"> & { id: number };
      const controller = new AbortController();
      controllers.set(request.id, controller);
      try {
        const response = await host.fetch({ ...request, body }, controller.signal);
        const { body: bytes, ...meta } = response;
        return { meta: JSON.stringify(meta), body: bytes };
      } finally {
        controllers.delete(request.id);
      }
    },
    abortFetch: (id: number) => controllers.get(id)?.abort(),
  };
}

test("end to end: guest fetch in QuickJS through the Node host", async () => {
  const { host, records } = network({ allowedHosts: ["127.0.0.1"] });
  const sandbox = await createSandbox(bridgeTo(host));
  try {
    const result = await sandbox.runAsync(`(async () => {
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const r = await fetch("${base}/echo", { method: "POST", body: bytes });
      const back = await r.bytes();
      let denied;
      try { await fetch("http://evil.test/"); } catch (e) { denied = [e.name, e.message, e.cause.message]; }
      const c = new AbortController();
      const pending = fetch("${base}/hang", { signal: c.signal });
      setTimeout(() => c.abort(), 20);
      const aborted = await pending.catch((e) => e.name);
      return [r.status, back.length, back.every((b, i) => b === i), denied, aborted];
    })()`);
    expect(result).toEqual([
      200,
      256,
      true,
      [
        "TypeError",
        'fetch failed: host "evil.test" is not in allowedHosts (allowed: "127.0.0.1")',
        'host "evil.test" is not in allowedHosts (allowed: "127.0.0.1")',
      ],
      "AbortError",
    ]);
    // The aborted request's record is written as its socket closes.
    await vi.waitFor(
      () =>
        expect(records.map((r) => [r.method, r.status, r.reason ?? null])).toEqual([
          ["POST", 200, null],
          ["GET", null, expect.stringContaining("not in allowedHosts")],
          ["GET", null, expect.stringContaining("was aborted")],
        ]),
      { timeout: 10_000 },
    );
  } finally {
    sandbox.dispose();
  }
});
