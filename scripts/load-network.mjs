#!/usr/bin/env node
// `npm run load:network`: measures how much host memory a task's network requests cost. A server
// on 127.0.0.1 serves 16 MiB bodies; tasks with a small `ram` fetch many of them at once (and
// post large request bodies), and the script prints the process's RSS before, at its peak
// (sampled every 10 ms) and after, with each task's outcome. Exits 1 when any task ended as
// internal_error or when the peak growth exceeds --bound MiB (when given).
//   npm run load:network -- --tasks 4 --fetches 12 --ram 16MB --bound 200 [--only control|download|upload]
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

if (typeof globalThis.gc !== "function") {
  const child = spawnSync(
    process.execPath,
    ["--expose-gc", ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  process.exit(child.status ?? 1);
}

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : process.argv[at + 1];
}
function count(name, fallback) {
  const text = option(name, String(fallback));
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    process.stderr.write(`${name} takes a non-negative integer, got ${text}\n`);
    process.exit(2);
  }
  return value;
}

const tasks = count("--tasks", 4);
const fetches = count("--fetches", 12);
const ram = option("--ram", "16MB");
const bodyMiB = count("--body-mib", 16);
const uploadMiB = count("--upload-mib", 4);
const boundMiB = option("--bound", null);
// 0 runs the tasks on this thread, where gc() reaches their garbage too.
const threads = option("--threads", null) === null ? undefined : count("--threads", 0);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
if (!process.argv.includes("--no-build")) {
  execFileSync(process.execPath, [join(root, "scripts/build.mjs")], { stdio: "inherit" });
}
const { run } = await import(pathToFileURL(join(root, "dist/node.mjs")).href);

const BODY = Buffer.alloc(bodyMiB * 2 ** 20, 120);
const server = createServer((request, response) => {
  // Request bodies are read and dropped: only what the runtime holds is measured.
  request.resume();
  request.on("end", () => {
    if (request.url === "/small") return void response.writeHead(200).end("ok");
    response.writeHead(200, { "content-type": "application/octet-stream" }).end(BODY);
  });
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);
const rss = () => process.memoryUsage.rss();

// Each task starts `fetches` requests at once, holds none of the bodies, and reports what
// happened to each: the errors the task could catch, or the run's own error type.
const scenarios = {
  // The same tasks and requests with 2-byte bodies: what running them costs without the bytes.
  control: `
    const outcomes = await Promise.allSettled(
      Array.from({ length: ${fetches} }, () => fetch("${origin}/small").then((r) => r.text())),
    );
    return outcomes.map((o) => o.status === "fulfilled" ? "ok" : (o.reason as Error).message.slice(0, 160));`,
  download: `
    const outcomes = await Promise.allSettled(
      Array.from({ length: ${fetches} }, () =>
        fetch("${origin}/big").then((r) => r.arrayBuffer()).then((b) => b.byteLength)),
    );
    return outcomes.map((o) => o.status === "fulfilled" ? "ok" : (o.reason as Error).message.slice(0, 160));`,
  upload: `
    const body = new Uint8Array(${uploadMiB} * 1024 * 1024);
    const outcomes = await Promise.allSettled(
      Array.from({ length: ${fetches} }, () =>
        fetch("${origin}/small", { method: "POST", body }).then((r) => r.text())),
    );
    return outcomes.map((o) => o.status === "fulfilled" ? "ok" : (o.reason as Error).message.slice(0, 160));`,
};

const cwd = mkdtempSync(join(tmpdir(), "capsule-load-network-"));
let failed = false;
try {
  // Warm the pool (every worker thread) and the compile cache so the baseline includes them.
  for (let round = 0; round < 3; round++) {
    await Promise.all(
      Array.from({ length: tasks }, () => run({ code: taskCode("return 1;"), cwd, threads })),
    );
  }
  globalThis.gc();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const only = option("--only", null);
  for (const [name, body] of Object.entries(scenarios)) {
    if (only !== null && only !== name) continue;
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const before = rss();
    let peak = before;
    let peakBuffers = 0;
    const sampler = setInterval(() => {
      const usage = process.memoryUsage();
      peak = Math.max(peak, usage.rss);
      peakBuffers = Math.max(peakBuffers, usage.arrayBuffers);
    }, 10);
    const started = performance.now();
    const envelopes = await Promise.all(
      Array.from({ length: tasks }, () => run({ code: taskCode(body), cwd, threads })),
    );
    const ms = Math.round(performance.now() - started);
    clearInterval(sampler);
    peak = Math.max(peak, rss());
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = rss();
    const growth = (peak - before) / 2 ** 20;
    console.log(
      `\n## ${name}: ${tasks} tasks × ${fetches} concurrent ${{ upload: `${uploadMiB} MiB request`, download: `${bodyMiB} MiB response`, control: "2-byte response" }[name]} bodies, ram ${ram}`,
    );
    console.log(
      `RSS before ${mib(before)} MiB, peak ${mib(peak)} MiB (+${growth.toFixed(1)}), after ${mib(after)} MiB; ArrayBuffers at most ${mib(peakBuffers)} MiB (this thread); ${ms} ms`,
    );
    const tally = new Map();
    for (const envelope of envelopes) {
      const key = envelope.success
        ? `success: ${summarize(envelope.result)}`
        : `${envelope.error.error_type}: ${envelope.error.message.slice(0, 200).replace(/\d+(\.\d+)?/g, "N")}`;
      tally.set(key, (tally.get(key) ?? 0) + 1);
      if (!envelope.success && envelope.error.error_type === "internal_error") failed = true;
    }
    for (const [key, times] of tally) console.log(`- ${times} × ${key}`);
    if (boundMiB !== null && growth > Number(boundMiB)) {
      console.log(`peak growth ${growth.toFixed(1)} MiB is over the bound of ${boundMiB} MiB`);
      failed = true;
    }
  }
} finally {
  rmSync(cwd, { recursive: true, force: true });
  server.closeAllConnections();
  server.close();
}
process.exit(failed ? 1 : 0);

function taskCode(body) {
  return `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main", ram: ${JSON.stringify(ram)}, allowedHosts: ["127.0.0.1"], timeout: "60s" }, async () => {
${body}
});
`;
}

/** Counts of equal entries in a task's list of outcomes. */
function summarize(result) {
  if (!Array.isArray(result)) return JSON.stringify(result);
  const counts = new Map();
  // Messages differ only in sizes and ports; count them as one.
  for (const entry of result) {
    const key = String(entry).replace(/\d+(\.\d+)?/g, "N");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([entry, times]) => `${times}× ${JSON.stringify(entry)}`).join(", ");
}
