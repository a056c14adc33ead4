// What Node's permission model alone keeps from a Python task, on the Node line that runs this
// file: the children run without namespaces (as on a machine that gives none). The host's files
// and processes are refused on every line, whichever flag the line takes. Then a real TCP server
// on 127.0.0.1, a real UDP socket and real Unix socket servers (named and abstract) wait, and the
// task tries every way out that its process offers. From Node 25 the permission model refuses
// them all; before, pythonIsolation() says nothing refuses them, and the task does reach them:
// declared, shown here, not hidden.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, shutdown } from "../index.ts";
import { permissionCoversNetwork, pythonIsolation, usePermissionModelOnly } from "./runner.ts";

const TIMEOUT = 300_000;
const major = Number(process.versions.node.split(".")[0]);
/** Said here from the Node release notes, not taken from the runner. */
const refusedByPermissionModel = major >= 25;

let dir: string;
const servers: Server[] = [];
const connections = new Set<Socket>();
let udp: UdpSocket;
let tcpPort = 0;
let udpPort = 0;
const socketPaths: Record<"named" | "abstract", string> = { named: "", abstract: "" };
/** Connections the servers accepted, and datagrams the UDP socket received. */
let reached = 0;

const listen = (server: Server, ...args: unknown[]) =>
  new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => resolve());
  });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "capsule-python-permission-"));
  const serve = () => {
    const server = createServer((connection) => {
      reached++;
      connections.add(connection);
      connection.on("close", () => connections.delete(connection));
      connection.on("error", () => {});
      connection.end("HTTP/1.0 200 OK\r\ncontent-length: 7\r\n\r\nreached");
    });
    servers.push(server);
    return server;
  };
  const tcp = serve();
  await listen(tcp, 0, "127.0.0.1");
  tcpPort = (tcp.address() as AddressInfo).port;
  socketPaths.named = join(dir, "service.sock");
  await listen(serve(), socketPaths.named);
  socketPaths.abstract = `\0capsule-permission-${process.pid}`;
  await listen(serve(), socketPaths.abstract);
  udp = createSocket("udp4");
  udp.on("message", () => {
    reached++;
  });
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  udpPort = udp.address().port;
  usePermissionModelOnly();
});

afterAll(async () => {
  await shutdown();
  for (const connection of connections) connection.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  await new Promise<void>((resolve) => udp.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Every way out: Node's net, http and dgram from the task's realm, and Python's own socket
 * module. Each says "reached" or "refused: <code>". (Node's fetch does not load in the child: its
 * loading assigns process.chdir, which the child has made read-only; http uses the same sockets.)
 */
const reachEverything = () => `import js, json, socket
from pyodide.ffi import create_proxy
from capsule import task

PORT = ${tcpPort}
UDP_PORT = ${udpPort}
PATHS = json.loads(${JSON.stringify(JSON.stringify(socketPaths))})

def settle(start):
    def executor(resolve, reject):
        def refused(error):
            resolve("refused: " + str(getattr(error, "code", None) or error))
        try:
            start(lambda *_: resolve("reached"), refused)
        except BaseException as e:
            resolve("refused: " + type(e).__name__ + " " + str(e)[:80])
    return js.Promise.new(create_proxy(executor))

def net(options):
    def start(reached, refused):
        s = js.process.getBuiltinModule("net").connect(js.Object.fromEntries(options))
        s.on("connect", create_proxy(reached))
        s.on("error", create_proxy(refused))
    return settle(start)

def http(options):
    def start(reached, refused):
        request = js.process.getBuiltinModule("http").get(js.Object.fromEntries(options), create_proxy(reached))
        request.on("error", create_proxy(refused))
    return settle(start)

def udp():
    def start(reached, refused):
        s = js.process.getBuiltinModule("dgram").createSocket("udp4")
        s.on("error", create_proxy(refused))
        s.send("x", UDP_PORT, "127.0.0.1", create_proxy(lambda error=None, *_: refused(error) if error else reached()))
    return settle(start)

def python_socket():
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        return "reached"
    except BaseException as e:
        return "refused: " + type(e).__name__

@task(name="main", timeout="60s")
async def main():
    return {
        "tcp": await net([["host", "127.0.0.1"], ["port", PORT]]),
        "unix": await net([["path", PATHS["named"]]]),
        "abstract": await net([["path", PATHS["abstract"]]]),
        "http_tcp": await http([["host", "127.0.0.1"], ["port", PORT], ["path", "/"]]),
        "http_unix": await http([["socketPath", PATHS["named"]], ["path", "/"]]),
        "udp": await udp(),
        "python_socket": python_socket(),
    }
`;

describe(`Python on Node ${process.versions.node}: the permission model as the only wall`, () => {
  it("declares what this Node line's permission model refuses", () => {
    expect(permissionCoversNetwork()).toBe(refusedByPermissionModel);
    expect(permissionCoversNetwork("24.22.3")).toBe(false);
    expect(permissionCoversNetwork("25.0.0")).toBe(true);
    expect(permissionCoversNetwork("26.12.1")).toBe(true);
    expect(pythonIsolation()).toMatchObject({
      permissionModel: true,
      namespaces: false,
      fileView: "host",
      permissionModelRefusesNetwork: refusedByPermissionModel,
      hostIpcRefusedBy: refusedByPermissionModel ? "permission-model" : "none",
    });
  });

  it(
    "refuses the task's realm the host's files and processes, on every line",
    async () => {
      const secret = join(dir, "secret.txt");
      writeFileSync(secret, "host secret");
      const written = join(dir, "written.txt");
      const envelope = await run({
        code: `import js
from capsule import task

def attempt(f):
    try:
        f()
        return "allowed"
    except BaseException as e:
        return "refused: " + str(getattr(getattr(e, "js_error", None), "code", None) or type(e).__name__)

@task(name="main")
def main():
    fs = js.process.getBuiltinModule("fs")
    spawn = js.process.getBuiltinModule("child_process")
    return {
        "read": attempt(lambda: fs.readFileSync(${JSON.stringify(secret)}, "utf8")),
        "write": attempt(lambda: fs.writeFileSync(${JSON.stringify(written)}, "x")),
        "list": attempt(lambda: fs.readdirSync(${JSON.stringify(dir)})),
        "spawn": attempt(lambda: spawn.execFileSync("/bin/true")),
    }
`,
        language: "py",
        cwd: dir,
        env: {},
      });
      expect(envelope.error).toBeNull();
      expect(envelope.result).toEqual({
        read: "refused: ERR_ACCESS_DENIED",
        write: "refused: ERR_ACCESS_DENIED",
        list: "refused: ERR_ACCESS_DENIED",
        spawn: "refused: ERR_ACCESS_DENIED",
      });
      expect(existsSync(written)).toBe(false);
    },
    TIMEOUT,
  );

  it(
    refusedByPermissionModel
      ? "refuses a Python task TCP and http to 127.0.0.1, named and abstract Unix sockets, and UDP"
      : "lets a Python task reach 127.0.0.1 and Unix sockets from its realm, as declared",
    async () => {
      const before = reached;
      const envelope = await run({ code: reachEverything(), language: "py", cwd: dir, env: {} });
      expect(envelope.error).toBeNull();
      const result = envelope.result as Record<string, string>;
      // Python's own sockets find no way out of the child on any line (Pyodide's socket layer
      // says the host is unreachable); counted below, they reached nothing.
      expect(result.python_socket).toMatch(/^refused/);
      if (refusedByPermissionModel) {
        expect(result).toEqual({
          tcp: "refused: ERR_ACCESS_DENIED",
          unix: "refused: ERR_ACCESS_DENIED",
          abstract: "refused: ERR_ACCESS_DENIED",
          http_tcp: "refused: ERR_ACCESS_DENIED",
          http_unix: "refused: ERR_ACCESS_DENIED",
          udp: expect.stringMatching(/^refused: .*ERR_ACCESS_DENIED/),
          python_socket: result.python_socket,
        });
        // Give a datagram sent anyway the time to arrive.
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(reached).toBe(before);
      } else {
        // The declared gap: without namespaces, nothing in Node before 25 keeps these closed.
        expect(result).toMatchObject({
          tcp: "reached",
          unix: "reached",
          abstract: "reached",
          http_tcp: "reached",
          http_unix: "reached",
        });
        // Five connections and one datagram; Python's socket module added none.
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(reached - before).toBe(6);
      }
    },
    TIMEOUT,
  );
});
