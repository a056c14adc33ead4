/**
 * A Python task probing its sandbox's host: the host's name, working directory and program, Unix
 * sockets, servers on 127.0.0.1, and a print() too large for one message. Every host that runs Python gives the same
 * neutral answers; Workers declare no Python and refuse the run.
 */
import type { Case, Expectation } from "../case.ts";
import { NO_PYTHON, pageFuel } from "../python.ts";

const attack = (
  id: string,
  group: Case["group"],
  title: string,
  code: string,
  expect: Expectation,
): Case => ({
  id: `python-attack-${id}`,
  group,
  title,
  code,
  language: "py",
  expect,
  where: [NO_PYTHON, pageFuel(expect)],
});

export const PYTHON_ATTACKS: Case[] = [
  attack(
    "refused-flood",
    "denial-of-service",
    "1,500 refused requests, the first three with 8,000-character URLs: host_requests lists 1,024, each cut to about 2,048 characters, and counts the rest in one last entry",
    `import capsule
from capsule import task

@task(name="main")
async def main():
    long = "a" * 8000
    refused = 0
    for i in range(1500):
        try:
            await capsule.fetch_async("https://denied.example/" + (long if i < 3 else "") + str(i))
        except PermissionError:
            refused += 1
    return refused
`,
    {
      success: true,
      result: 1500,
      fuel: "any",
      hostRequests: {
        count: 1025,
        lastReason: "^and 476 more requests, not listed \\(host_requests lists at most 1024\\)$",
        longestText: 2100,
      },
    },
  ),
  attack(
    "host-facts",
    "escape",
    "a Python task's host name, working directory and program are neutral, not the host's",
    `import os, socket, sys
from capsule import task

@task(name="main")
def main():
    return {
        "nodename": os.uname().nodename,
        "gethostname": socket.gethostname(),
        "getcwd": os.getcwd(),
        "executable": sys.executable,
        "argv": sys.argv,
    }
`,
    {
      success: true,
      result: {
        nodename: "emscripten",
        gethostname: "emscripten",
        getcwd: "/",
        executable: "/capsule/python",
        argv: [""],
      },
    },
  ),
  attack(
    "unix-socket",
    "escape",
    "Python's socket module opens no Unix socket, named or abstract",
    `import socket
from capsule import task

def attempt(path):
    try:
        s = socket.socket(getattr(socket, "AF_UNIX", 1), socket.SOCK_STREAM)
        s.connect(path)
        return "connected"
    except BaseException as e:
        return "refused"

@task(name="main")
def main():
    return {
        "has_af_unix": hasattr(socket, "AF_UNIX"),
        "run": attempt("/run/dbus/system_bus_socket"),
        "docker": attempt("/var/run/docker.sock"),
        "abstract": attempt("\\0/tmp/.X11-unix/X0"),
    }
`,
    {
      success: true,
      result: { has_af_unix: false, run: "refused", docker: "refused", abstract: "refused" },
    },
  ),
  attack(
    "loopback",
    "network",
    "Python's own sockets and urllib get no answer from the suite's server on 127.0.0.1",
    `import socket
import urllib.request
from urllib.parse import urlsplit
from capsule import task

SERVER = "{{SERVER}}"
PORT = urlsplit(SERVER).port

def attempt(f):
    try:
        return "answered" if b"hello" in f() else "refused"
    except BaseException:
        return "refused"

def ask(s):
    # A connect that returns proves nothing where sockets connect lazily: only an answer does.
    s.settimeout(2)
    s.sendall(b"GET /text HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
    answer = s.recv(4096)
    s.close()
    return answer

def create_connection():
    return ask(socket.create_connection(("127.0.0.1", PORT), timeout=2))

def connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", PORT))
    return ask(s)

@task(name="main")
def main():
    return {
        "create_connection": attempt(create_connection),
        "connect": attempt(connect),
        "urllib": attempt(lambda: urllib.request.urlopen(SERVER + "/text", timeout=2).read()),
    }
`,
    // The refusals' text names the suite server's port, which changes every run, and Python's
    // string hashing, and so its fuel, follows the text. Only an answer counts as reached here;
    // on Node, adapters/node/python/permission-model.test.ts counts the connections a server
    // sees, and shows what the task's JavaScript realm can reach, which depends on the machine
    // and the Node line (pythonIsolation()).
    {
      success: true,
      result: { create_connection: "refused", connect: "refused", urllib: "refused" },
      fuel: "any",
    },
  ),
  attack(
    "huge-print",
    "denial-of-service",
    "a print() of 12 MiB in one line reaches the log truncated and the task finishes",
    `from capsule import task

@task(name="main")
def main():
    print("z" * (12 * 1024 * 1024))
    return "printed"
`,
    { success: true, result: "printed" },
  ),
];
