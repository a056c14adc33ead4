/**
 * `capsule mcp`: the Model Context Protocol server (core/agent/mcp-server.ts) over stdio, or over
 * Streamable HTTP on 127.0.0.1 behind a bearer token.
 *
 * Scope of `session_id`: over stdio the process serves one client, and its ids are that client's.
 * Over HTTP every MCP session (one `initialize`, one `Mcp-Session-Id`) gets tools of its own, so
 * a client can neither guess nor reuse another client's session_ids; the number of code sessions
 * is bounded across all clients by one budget.
 *
 * Bounds over HTTP (McpHttpOptions): at most `maxClients` MCP sessions (default 8), each closed
 * after `clientIdleMs` with no request and no call running (default 30 min; an open GET stream
 * does not count) along with its code sessions; code
 * sessions at most `maxSessions` in all (the tools' option, default 16; a fork is one), each
 * closed after its idle time (default 10 min); their state within the process's session image
 * budget (Session.imageBudget, CAPSULE_SESSION_MEMORY), whichever client holds it; a request body
 * at most `maxBodyBytes`.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { createMcpServer } from "../../core/agent/mcp-server.ts";
import { type CapsuleTools, SessionBudget } from "../../core/agent/tools.ts";

export const DEFAULT_MAX_CLIENTS = 8;
export const DEFAULT_CLIENT_IDLE_MS = 30 * 60_000;
/** The shortest token `CAPSULE_MCP_TOKEN` may hold. */
export const MIN_TOKEN_LENGTH = 16;

/** Serves one client on this process's stdin and stdout until stdin ends. */
export async function serveMcpStdio(
  tools: CapsuleTools,
  options: { version: string; maxMessageBytes: number },
): Promise<void> {
  const server = createMcpServer(tools, { version: options.version });
  const transport = new StdioServerTransport(process.stdin, process.stdout, {
    maxBufferSize: options.maxMessageBytes,
  });
  const closed = new Promise<void>((resolve) => {
    server.onclose = resolve;
  });
  // A message over maxMessageBytes ends the connection: say why on stderr (stdout is the
  // protocol's).
  server.onerror = (error) => process.stderr.write(`capsule mcp: ${error.message}\n`);
  await server.connect(transport);
  // The client ends the connection by closing our stdin.
  process.stdin.once("end", () => void server.close());
  process.stdin.once("close", () => void server.close());
  await closed;
  await tools.close();
}

export interface McpHttpOptions {
  /** Tools for one client; `budget` bounds code sessions across all clients. */
  createTools: (budget: SessionBudget) => CapsuleTools;
  /** The cap `budget` enforces: code sessions alive across all clients. */
  maxSessions: number;
  version: string;
  /** 0 picks a free port. */
  port: number;
  token: string;
  maxClients?: number;
  clientIdleMs?: number;
  maxBodyBytes: number;
}

export interface McpHttpServer {
  /** http://127.0.0.1:<port>/mcp */
  url: string;
  port: number;
  /** MCP sessions open now. */
  readonly clients: number;
  close(): Promise<void>;
}

interface Client {
  server: ReturnType<typeof createMcpServer>;
  transport: StreamableHTTPServerTransport;
  tools: CapsuleTools;
  lastSeen: number;
  inFlight: number;
}

/** Streamable HTTP on 127.0.0.1 at /mcp. Every request needs `Authorization: Bearer <token>`. */
export async function serveMcpHttp(options: McpHttpOptions): Promise<McpHttpServer> {
  const maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
  const idleMs = options.clientIdleMs ?? DEFAULT_CLIENT_IDLE_MS;
  const budget = new SessionBudget(options.maxSessions);
  const expected = digest(options.token);
  const clients = new Map<string, Client>();
  let opening = 0;
  let port = options.port;

  async function drop(id: string): Promise<void> {
    const client = clients.get(id);
    if (client === undefined) return;
    clients.delete(id);
    await client.transport.close().catch(() => {});
    await client.tools.close();
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = (request.url ?? "/").split("?", 1)[0];
    // Another site's page reaching 127.0.0.1 under a name it controls (DNS rebinding) names
    // that name in Host: only our own address is served.
    const host = request.headers.host;
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) {
      return reply(response, 403, `this server answers only Host 127.0.0.1:${port}`);
    }
    if (path !== "/mcp") {
      return reply(response, 404, `no route ${request.method} ${path}; the MCP endpoint is /mcp`);
    }
    const given = bearerToken(request.headers.authorization);
    if (given === null || !timingSafeEqual(digest(given), expected)) {
      response.setHeader("WWW-Authenticate", 'Bearer realm="capsule"');
      return reply(
        response,
        401,
        given === null
          ? "this server needs an Authorization: Bearer <token> header (the token capsule mcp printed, or CAPSULE_MCP_TOKEN)"
          : "the bearer token is not the one this server expects",
      );
    }
    let body: unknown;
    if (request.method === "POST") {
      const read = await readJson(request, options.maxBodyBytes);
      if (read.error !== undefined) return reply(response, read.status, read.error);
      body = read.value;
    }
    const sessionId = request.headers["mcp-session-id"];
    if (typeof sessionId === "string") {
      const client = clients.get(sessionId);
      if (client === undefined) {
        return reply(
          response,
          404,
          "no such MCP session (it was closed, expired or never existed): initialize a new one",
        );
      }
      // A call in progress keeps its MCP session; a GET stream left open (for messages the
      // server might start, which this one never does) does not.
      const call = request.method === "POST" ? 1 : 0;
      client.lastSeen = Date.now();
      client.inFlight += call;
      try {
        await client.transport.handleRequest(request, response, body);
      } finally {
        client.inFlight -= call;
        client.lastSeen = Date.now();
      }
      return;
    }
    if (request.method !== "POST" || !isInitializeRequest(body)) {
      return reply(
        response,
        400,
        "no Mcp-Session-Id header: the first request of an MCP session is a POST of initialize",
      );
    }
    if (clients.size + opening >= maxClients) {
      return reply(
        response,
        503,
        `${maxClients} MCP sessions are open (the limit): close one (DELETE /mcp) or wait until one has been idle for ${Math.round(idleMs / 60_000)} min`,
      );
    }
    opening++;
    const tools = options.createTools(budget);
    const server = createMcpServer(tools, { version: options.version });
    let registered = false;
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      maxRequestBodySize: options.maxBodyBytes,
      onsessioninitialized: (id) => {
        registered = true;
        opening--;
        clients.set(id, { server, transport, tools, lastSeen: Date.now(), inFlight: 0 });
      },
      onsessionclosed: (id) => void drop(id),
    });
    try {
      await server.connect(transport);
      await transport.handleRequest(request, response, body);
    } finally {
      if (!registered) {
        opening--;
        await tools.close();
      }
    }
  }

  const http = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        reply(response, 500, `internal error: ${(error as Error)?.message ?? String(error)}`);
      } else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port, "127.0.0.1", () => {
      http.off("error", reject);
      resolve();
    });
  });
  port = (http.address() as AddressInfo).port;

  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const [id, client] of clients) {
        if (client.inFlight === 0 && now - client.lastSeen >= idleMs) void drop(id);
      }
    },
    Math.max(1_000, Math.min(60_000, Math.floor(idleMs / 4))),
  );
  sweep.unref();

  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    get clients() {
      return clients.size;
    },
    async close() {
      clearInterval(sweep);
      await Promise.all([...clients.keys()].map(drop));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** A token for `--http` when CAPSULE_MCP_TOKEN gives none: 256 random bits. */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer[ \t]+(.*\S)[ \t]*$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

/** Tokens are compared as SHA-256 digests: equal length, so the compare takes constant time. */
function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

type ReadResult = { value: unknown; error?: undefined } | { error: string; status: 400 | 413 };

function readJson(request: IncomingMessage, maxBytes: number): Promise<ReadResult> {
  const tooLarge: ReadResult = {
    error: `the body is larger than ${maxBytes} bytes, the limit`,
    status: 413,
  };
  if (Number(request.headers["content-length"]) > maxBytes) {
    request.resume();
    return Promise.resolve(tooLarge);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      if (size > maxBytes) return;
      size += chunk.length;
      // Past the limit: answer now, and let the rest drain unread.
      if (size > maxBytes) resolve(tooLarge);
      else chunks.push(chunk);
    });
    request.on("error", reject);
    request.on("end", () => {
      if (size > maxBytes) return;
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
      } catch {
        resolve({ error: "the body is not UTF-8; send JSON encoded as UTF-8", status: 400 });
        return;
      }
      try {
        resolve({ value: JSON.parse(text) });
      } catch (error) {
        resolve({ error: `the body is not JSON: ${(error as Error).message}`, status: 400 });
      }
    });
  });
}

/** An error answer shaped as JSON-RPC, as MCP clients read them. */
function reply(response: ServerResponse, status: number, message: string): void {
  response.writeHead(status, { "content-type": "application/json" }).end(
    JSON.stringify({
      jsonrpc: "2.0",
      error: { code: status === 400 || status === 413 ? -32600 : -32000, message },
      id: null,
    }),
  );
}
