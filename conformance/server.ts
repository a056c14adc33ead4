// The suite's HTTP server on 127.0.0.1: plain answers, redirect chains, a slow-loris body and a
// huge one. CORS headers on every route but /no-cors, so a page can read them.
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Larger than the 16 MiB response limit every host enforces. */
export const HUGE_BYTES = 17 * 1024 * 1024;
/**
 * The one port every host's guest reaches the suite on. Fuel is counted in wasm instructions, and
 * the guest's work follows the text it handles: with a random port, a few cases (a header refused
 * before any request, a Python refusal naming the URL) spent 58-112 more fuel for some ports, as
 * hash chains and digit strings differ. One fixed origin keeps fuel.json exact. It is below Linux's
 * ephemeral range (32768-60999), so no outgoing connection takes it.
 */
export const SUITE_PORT = 28311;
/** How long a busy port is retried before the suite gives up and names it. */
const PORT_WAIT_MS = 15_000;
/** A slow-loris body stops by itself after this long, so the server always closes. */
const SLOW_LIMIT_MS = 20_000;

export interface SuiteServer {
  origin: string;
  close(): Promise<void>;
}

/** Starts the suite's server on `port` (0 for any free port, for tests that compare no fuel). */
export async function startSuiteServer(port = SUITE_PORT): Promise<SuiteServer> {
  const slowTimers = new Set<NodeJS.Timeout>();
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://suite");
    if (url.pathname !== "/no-cors") {
      response.setHeader("access-control-allow-origin", "*");
      response.setHeader("access-control-allow-headers", "*");
      response.setHeader("access-control-allow-methods", "*");
      response.setHeader("access-control-expose-headers", "*");
    }
    if (request.method === "OPTIONS") return void response.writeHead(204).end();
    // /sized/<bytes>: that many bytes with their length; ?chunked leaves the length out.
    const sized = /^\/sized\/(\d+)$/.exec(url.pathname);
    if (sized && Number(sized[1]) <= HUGE_BYTES) {
      const bytes = Buffer.alloc(Number(sized[1]), 120);
      response.writeHead(200, { "content-type": "application/octet-stream" });
      // A write before end() sends the body chunked, without a length.
      if (url.searchParams.has("chunked")) response.write(bytes);
      return void response.end(url.searchParams.has("chunked") ? undefined : bytes);
    }
    const redirect = /^\/redirect\/(\d+)$/.exec(url.pathname);
    if (redirect) {
      const left = Number(redirect[1]);
      if (left === 0) return void response.writeHead(200).end("arrived");
      return void response.writeHead(302, { location: `/redirect/${left - 1}` }).end();
    }
    switch (url.pathname) {
      case "/text":
      case "/no-cors":
        return void response.writeHead(200, { "content-type": "text/plain" }).end("hello");
      case "/bytes":
        return void response
          .writeHead(200, { "content-type": "application/octet-stream" })
          .end(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
      case "/echo": {
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        request.on("end", () =>
          response
            .writeHead(200, { "content-type": request.headers["content-type"] ?? "none" })
            .end(Buffer.concat(chunks)),
        );
        return;
      }
      case "/sink":
        // Reads the request body and drops it.
        request.resume();
        return void request.on("end", () => response.writeHead(200).end("ok"));
      case "/away":
        return void response
          .writeHead(302, { location: url.searchParams.get("to") ?? "/text" })
          .end();
      case "/huge":
        return sendHuge(response);
      case "/slow":
        return sendSlowly(response, slowTimers);
      default:
        return void response.writeHead(404).end("no such route");
    }
  });
  await listenOn(server, port);
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        for (const timer of slowTimers) clearInterval(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function listenOn(server: Server, port: number): Promise<void> {
  const giveUpAt = Date.now() + PORT_WAIT_MS;
  for (;;) {
    try {
      return await new Promise<void>((resolve, reject) => {
        // Both removed whichever comes: a retry adds its own (11 retries had warned of a leak).
        const listening = () => {
          server.off("error", failed);
          resolve();
        };
        const failed = (error: Error) => {
          server.off("listening", listening);
          reject(error);
        };
        server.once("error", failed);
        server.once("listening", listening);
        server.listen(port, "127.0.0.1");
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EADDRINUSE" || Date.now() > giveUpAt) {
        throw new Error(
          `the conformance server cannot listen on 127.0.0.1:${port} (${code}); fuel.json is ` +
            "recorded against that origin, so stop what holds the port (another test run?) and retry",
          { cause: error },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

function sendHuge(response: ServerResponse): void {
  response.writeHead(200, { "content-type": "application/octet-stream" });
  const chunk = Buffer.alloc(1024 * 1024, 120);
  let sent = 0;
  const pump = () => {
    while (sent < HUGE_BYTES) {
      sent += chunk.length;
      if (!response.write(chunk)) return void response.once("drain", pump);
    }
    response.end();
  };
  response.on("close", () => {
    sent = HUGE_BYTES;
  });
  pump();
}

/** Headers at once, then one byte every 200 ms: a response that never completes in time. */
function sendSlowly(response: ServerResponse, timers: Set<NodeJS.Timeout>): void {
  response.writeHead(200, { "content-type": "text/plain" });
  response.write(".");
  const started = Date.now();
  const timer = setInterval(() => {
    if (response.destroyed || Date.now() - started > SLOW_LIMIT_MS) {
      clearInterval(timer);
      timers.delete(timer);
      response.end();
      return;
    }
    response.write(".");
  }, 200);
  timers.add(timer);
}
