/**
 * Host memory spent on a task's requests: the bytes a host holds for them (request bodies while
 * sent, response bodies while they arrive) count against the task's `ram`. Past it a fetch fails
 * with a TypeError the task can catch, naming the limit; a body that does not fit in what is left
 * of the task's own memory fails the same way, never as internal_error.
 */
import { type Case, mainTask } from "../case.ts";

const MIB = 1024 * 1024;

/** Each settled fetch as a word: ok, refused by the ram bound, the guest's own out-of-memory. */
const classify = `
  const kind = (o: PromiseSettledResult<unknown>): string => {
    if (o.status === "fulfilled") return "ok";
    const e = o.reason as Error;
    if (e.name === "TypeError" && /ram \\(/.test(e.message)) return "ram";
    if (/out of memory|allocate memory/.test(e.message)) return "oom";
    return e.name + ": " + e.message;
  };`;

export const NETWORK_ATTACKS: Case[] = [
  {
    id: "attack-net-refused-flood",
    group: "denial-of-service",
    title:
      "1,500 refused requests, the first three with 2,500-character URLs: host_requests lists 1,024, each cut to about 2,048 characters, and counts the rest in one last entry",
    code: mainTask(
      `const long = "a".repeat(2500);
      let refused = 0;
      for (let i = 0; i < 1500; i++) {
        try { await fetch("https://denied.example/" + (i < 3 ? long : "") + i); } catch { refused++; }
      }
      return refused;`,
      `{ name: "main", compute: "HIGH", timeout: "60s", allowedHosts: [] }`,
    ),
    expect: {
      success: true,
      result: 1500,
      fuel: "any",
      hostRequests: {
        count: 1025,
        lastReason: "^and 476 more requests, not listed \\(host_requests lists at most 1024\\)$",
        longestText: 2100,
      },
    },
  },
  {
    id: "attack-net-held-concurrent",
    group: "denial-of-service",
    title:
      "twelve concurrent 12 MiB downloads from a 16MB task: the host holds no more than its ram, the rest fail with a catchable TypeError",
    code: mainTask(
      `${classify}
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, () =>
          fetch("{{SERVER}}/sized/${12 * MIB}?chunked").then((r) => r.arrayBuffer()).then(() => null)),
      );
      const kinds = outcomes.map(kind);
      return { unexpected: kinds.filter((k) => !["ok", "ram", "oom"].includes(k)), refusedForRam: kinds.includes("ram") };`,
      `{ name: "main", ram: "16MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: { unexpected: [], refusedForRam: true }, fuel: "any" },
  },
  {
    id: "attack-net-held-body-over-ram",
    group: "denial-of-service",
    title: "a response body larger than the task's ram fails at its headers, naming ram",
    code: mainTask(
      `try { await fetch("{{SERVER}}/sized/${12 * MIB}"); return "fetched"; }
       catch (e) { return (e as Error).name + ": " + (e as Error).message; }`,
      `{ name: "main", ram: "8MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: {
      success: true,
      resultMatches: "^\"TypeError: .*larger than the task's ram \\(8MB\\)",
      fuel: "any",
    },
  },
  {
    id: "attack-net-held-body-at-ram",
    group: "denial-of-service",
    title:
      "a 16 MiB body for a 16MB task cannot be copied into its memory: a catchable TypeError naming ram, not internal_error",
    code: mainTask(
      `try { const r = await fetch("{{SERVER}}/sized/${16 * MIB}"); await r.arrayBuffer(); return "fetched"; }
       catch (e) { return (e as Error).name + ": " + (e as Error).message; }`,
      `{ name: "main", ram: "16MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: {
      success: true,
      resultMatches: '^"(TypeError: .*ram|InternalError: out of memory)',
      fuel: "any",
    },
  },
  {
    id: "attack-net-held-unread",
    group: "denial-of-service",
    title:
      "responses kept unread while fetching more live in the task's memory and stop at its ram",
    code: mainTask(
      `const held: Response[] = [];
      try {
        for (let i = 0; i < 64; i++) held.push(await fetch("{{SERVER}}/sized/${1 * MIB}"));
        return "held all " + held.length;
      } catch (e) {
        const error = e as Error;
        const refused = /ram \\(|out of memory/.test(error.message);
        return [refused ? "refused" : error.name + ": " + error.message, held.length < 16];
      }`,
      `{ name: "main", ram: "16MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: ["refused", true], fuel: "any" },
  },
  {
    id: "attack-net-held-request-bodies",
    group: "denial-of-service",
    title:
      "twelve concurrent 3 MiB uploads from a 16MB task: each body is held in the task's memory and on the host, both bounded by its ram",
    code: mainTask(
      `${classify}
      const body = new Uint8Array(${3 * MIB});
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, () =>
          fetch("{{SERVER}}/sink", { method: "POST", body }).then((r) => r.text())),
      );
      const kinds = outcomes.map(kind);
      return { unexpected: kinds.filter((k) => !["ok", "ram", "oom"].includes(k)), someRefused: kinds.some((k) => k !== "ok") };`,
      `{ name: "main", ram: "16MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: { unexpected: [], someRefused: true }, fuel: "any" },
  },
  {
    id: "attack-net-held-catch-continue",
    group: "denial-of-service",
    title:
      "a task that catches a refused download goes on fetching: what the refused one held was given back",
    code: mainTask(
      `${classify}
      const first = await Promise.allSettled(
        Array.from({ length: 4 }, () => fetch("{{SERVER}}/sized/${12 * MIB}").then((r) => r.arrayBuffer())),
      );
      const after: string[] = [];
      for (let i = 0; i < 3; i++) after.push(await (await fetch("{{SERVER}}/text")).text());
      return [first.map(kind).includes("ram"), after];`,
      `{ name: "main", ram: "16MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: [true, ["hello", "hello", "hello"]], fuel: "any" },
  },
  {
    id: "attack-net-held-released",
    group: "denial-of-service",
    title:
      "downloads one after another each get the whole budget back: six 10 MiB bodies in a 48MB task",
    code: mainTask(
      `let total = 0;
      for (let i = 0; i < 6; i++) {
        const r = await fetch("{{SERVER}}/sized/${10 * MIB}" + (i % 2 ? "?chunked" : ""));
        total += (await r.arrayBuffer()).byteLength;
      }
      return total;`,
      `{ name: "main", ram: "48MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: 6 * 10 * MIB, fuel: "any" },
  },
  {
    id: "attack-net-held-full-memory",
    group: "denial-of-service",
    title:
      "a fetch answered while the task's memory is full fails cleanly (no bytes written outside an allocation), and the task goes on",
    code: mainTask(
      `let keep: Uint8Array[] | null = [];
      try { for (;;) keep.push(new Uint8Array(64 * 1024)); } catch {}
      let outcome: string;
      try { const r = await fetch("{{SERVER}}/sized/2000"); outcome = (await r.text()).length === 2000 ? "fetched" : "short"; }
      catch (e) { outcome = /ram \\(|out of memory|allocate memory/.test((e as Error).message) ? "refused" : (e as Error).name + ": " + (e as Error).message; }
      keep = null;
      const again = await (await fetch("{{SERVER}}/text")).text();
      return [outcome === "fetched" || outcome === "refused" ? "clean" : outcome, again];`,
      `{ name: "main", ram: "16MB", allowedHosts: ["127.0.0.1"] }`,
    ),
    expect: { success: true, result: ["clean", "hello"], fuel: "any" },
  },
];
