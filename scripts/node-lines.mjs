#!/usr/bin/env node
/**
 * Runs tests on every Node line users run, each with that line's own `node`.
 *
 *   node scripts/node-lines.mjs                      the default selection (EVERY_LINE, BOUNDARY)
 *   node scripts/node-lines.mjs conformance/node.test.ts adapters/node/python/
 *   node scripts/node-lines.mjs --lines=22,26 ...    only these lines (majors or exact versions)
 *   node scripts/node-lines.mjs --install            install the builds and stop
 *   node scripts/node-lines.mjs --verbose ...        stream each run's output as it goes
 *
 * A selection is test files and folders (vitest filters by path, so `consumer/` runs
 * `consumer/*.test.ts`). Each build comes from the npm registry (`node-<platform>-<arch>@<version>`,
 * the official binary in a tarball), is checked against the integrity pinned below, and is
 * unpacked once into `$CAPSULE_NODE_CACHE` (default ~/.cache/capsule-portable), as
 * `node-<version>/bin/node`. Then `<node> node_modules/vitest/vitest.mjs run <selection>` runs on
 * each line in turn, with that node first on PATH. One line per version says pass or fail and
 * how long it took; a failed run's failures follow it (every run's full output is kept in
 * `<cache>/logs/`). The exit code is non-zero when any line fails, or when a selection entry that
 * exists ran no test file. An entry naming a path that does not exist (yet) is left out, and said
 * so. Reads no standard input; under CI=1 it prints only the summary lines and failures.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * The Node builds the project is tested on: the oldest release the package accepts (20.19, where
 * `require(esm)` is unflagged) at its newest patch, and the newest release of each later line
 * users run. The machine's own node (`npm test`) is the line CI runs the full suite on.
 */
export const NODE_LINES = [
  {
    version: "20.19.6",
    integrity:
      "sha512-nSaDjLjUZdsLMDckfinsQl+hvKifYUuzO7swyacVzrKAIi0ByaORSE1DpaRTjxfCq3mETV/3uTlKXStzd2nJWQ==",
  },
  {
    version: "22.23.5",
    integrity:
      "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
  },
  {
    version: "24.22.3",
    integrity:
      "sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==",
  },
  {
    version: "26.12.1",
    integrity:
      "sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==",
  },
];

/**
 * The last release of each line before the package's floor (`engines` in package.json): with no
 * selection given, each must be refused with one clear error by the CLI, an import and a
 * require(), and run nothing. 20.18 and 22.11 cannot require() ES modules without a flag.
 */
export const TOO_OLD = [
  {
    version: "20.18.3",
    integrity:
      "sha512-gzRiA4TE3mPUfh10txSFXlf26yDmOQx4z81baGjDRbQfBZPYuE5qmpqG5XMNheDwNwcCyRoxtz2yObJV+Ow8fg==",
  },
  {
    version: "22.11.0",
    integrity:
      "sha512-w4fGCSCqW/Kl353Sxdq3YzIThDFikvJehHI9q1GLGVdtSkAZJXcStK18JcSa1ycns3kKDji0Mois1wZsMXqaDQ==",
  },
];

/**
 * Run on every line when no selection is given: the Node host's conformance suite (JavaScript
 * and Python tasks through run(), every case with its exact fuel) and the consumer tests (the
 * package as an application installs it: its CLI and its imports).
 */
export const EVERY_LINE = ["conformance/node.test.ts", "consumer/"];

/**
 * Run as well on each line of another major than the Node running this script (the one `npm test`
 * ran the whole suite on): the Python child's boundary where it follows the line, its V8 (stack
 * switching, wasm GC, heap sizing) and its permission model (the flag, files and processes, the
 * network from 25), and the CLI's start on V8's baseline tier, which differs from V8 13 (Node 24).
 * The rest of the Python tests (python.test.ts, host-access.test.ts: about
 * 3 minutes a line) run in the whole suite only.
 */
export const BOUNDARY = [
  "adapters/node/cli-launch.test.ts",
  "adapters/node/python/attacks.test.ts",
  "adapters/node/python/permission-model.test.ts",
];

const majorOf = (version) => Number(version.replace(/^v/, "").split(".")[0]);

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cache = process.env.CAPSULE_NODE_CACHE ?? join(homedir(), ".cache", "capsule-portable");
const quiet = process.env.CI === "1" || process.env.CI === "true";

/** The npm package that holds this machine's Node binaries. */
function binaryPackage() {
  const platform = { linux: "linux", darwin: "darwin" }[process.platform];
  const arch = { x64: "x64", arm64: "arm64" }[process.arch];
  if (!platform || !arch) {
    throw new Error(
      `no Node build on npm is known for ${process.platform}-${process.arch} here; run the tests with each line's node by hand`,
    );
  }
  return `node-${platform}-${arch}`;
}

function versionOf(node) {
  const result = spawnSync(node, ["--version"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return result.status === 0 ? result.stdout.trim() : null;
}

/**
 * The build's `bin/node`, unpacked from the registry unless a good copy is there already.
 * Idempotent: a folder whose node answers with the wanted version is kept as it is.
 */
function install({ version, integrity }) {
  const dir = join(cache, `node-${version}`);
  const node = join(dir, "bin", "node");
  if (versionOf(node) === `v${version}`) return node;
  mkdirSync(cache, { recursive: true });
  const staging = mkdtempSync(join(cache, `.node-${version}-`));
  try {
    const spec = `${binaryPackage()}@${version}`;
    const packed = spawnSync(
      "npm",
      ["pack", spec, "--json", "--pack-destination", staging, "--no-fund", "--no-audit"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd: staging },
    );
    if (packed.status !== 0) {
      throw new Error(`npm pack ${spec} failed: ${(packed.stderr || packed.stdout).trim()}`);
    }
    const [info] = JSON.parse(packed.stdout);
    if (process.platform === "linux" && process.arch === "x64" && info.integrity !== integrity) {
      throw new Error(
        `${spec} from the registry has integrity ${info.integrity}, not the pinned ${integrity}`,
      );
    }
    const tarball = join(staging, info.filename);
    const untar = spawnSync("tar", ["-xzf", tarball, "-C", staging], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (untar.status !== 0) throw new Error(`unpacking ${tarball} failed: ${untar.stderr.trim()}`);
    const unpacked = join(staging, "package");
    const got = versionOf(join(unpacked, "bin", "node"));
    if (got !== `v${version}`) {
      throw new Error(`${spec} holds a node that says ${got ?? "nothing"}, not v${version}`);
    }
    rmSync(dir, { recursive: true, force: true });
    renameSync(unpacked, dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  const got = versionOf(node);
  if (got !== `v${version}`) throw new Error(`${node} says ${got ?? "nothing"}, not v${version}`);
  return node;
}

/** The lines picked by `--lines=20,24.22.3`: a major picks its line, a full version itself. */
function pickLines(spec) {
  if (!spec) return NODE_LINES;
  const wanted = spec.split(",").map((item) => item.trim().replace(/^v/, ""));
  const picked = NODE_LINES.filter(({ version }) =>
    wanted.some((item) => version === item || version.split(".")[0] === item),
  );
  const unknown = wanted.filter(
    (item) => !NODE_LINES.some(({ version }) => version === item || version.split(".")[0] === item),
  );
  if (unknown.length > 0) {
    throw new Error(
      `--lines names ${unknown.join(", ")}, which is not among ${NODE_LINES.map((line) => line.version).join(", ")}`,
    );
  }
  return picked;
}

/** Runs vitest with one line's node; resolves to the exit code, the output kept in `logFile`. */
function runVitest(node, files, logFile, reportFile) {
  const log = createWriteStream(logFile);
  const child = spawn(
    node,
    [
      join(root, "node_modules", "vitest", "vitest.mjs"),
      "run",
      "--reporter=default",
      "--reporter=json",
      `--outputFile.json=${reportFile}`,
      ...files,
    ],
    {
      cwd: root,
      // The output goes to a log file first: no colour codes in it.
      env: {
        ...process.env,
        PATH: `${dirname(node)}:${process.env.PATH ?? ""}`,
        CI: "1",
        NO_COLOR: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  for (const stream of [child.stdout, child.stderr]) {
    stream.on("data", (chunk) => {
      log.write(chunk);
      if (!quiet && verbose) process.stdout.write(chunk);
    });
  }
  return new Promise((done) => {
    child.on("close", (code, signal) => log.end(() => done(code ?? (signal ? 128 : 1))));
  });
}

/** The test files a vitest JSON report says ran, relative to the project. */
function filesRun(reportFile) {
  try {
    const report = JSON.parse(readFileSync(reportFile, "utf8"));
    return {
      files: report.testResults.map((result) => relative(root, result.name)),
      passed: report.numPassedTests,
      failed: report.numFailedTests,
      skipped: report.numPendingTests + report.numTodoTests,
    };
  } catch {
    return null;
  }
}

/**
 * What a Node the package does not support gets: problems found, none when the CLI exits 2 with
 * one line naming the supported range and this version, and an import and a require() of the
 * library each fail with an error naming both.
 */
function refusalProblems(node, version) {
  const engines = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).engines.node;
  const named = (text) => text.includes(engines) && text.includes(version);
  const runIt = (args) =>
    spawnSync(node, args, {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
      env: { ...process.env, NO_COLOR: "1" },
    });
  const problems = [];
  const cli = runIt([join(root, "bin", "capsule.mjs"), "run", "examples/hello.ts"]);
  const lines = cli.stderr.trim().split("\n");
  if (
    cli.status !== 2 ||
    lines.length !== 1 ||
    !lines[0].startsWith("capsule: ") ||
    !named(lines[0])
  ) {
    problems.push(
      `the CLI exited ${cli.status} with: ${cli.stderr.trim().slice(0, 300) || "nothing on stderr"}`,
    );
  }
  if (cli.stdout.includes("Hello")) problems.push("the CLI ran the task");
  const imported = runIt([
    "--input-type=module",
    "-e",
    `await import(${JSON.stringify(pathToFileURL(join(root, "dist", "node.mjs")).href)})`,
  ]);
  if (imported.status === 0 || !named(imported.stderr)) {
    problems.push(
      `an import of dist/node.mjs exited ${imported.status}: ${imported.stderr.trim().slice(-300)}`,
    );
  }
  const required = runIt(["-e", `require(${JSON.stringify(join(root, "dist", "node.cjs"))})`]);
  if (required.status === 0 || !named(required.stderr)) {
    problems.push(
      `a require() of dist/node.cjs exited ${required.status}: ${required.stderr.trim().slice(-300)}`,
    );
  }
  return problems;
}

/** What vitest says failed: its failure summary, or the end of the log where there is none. */
function failureReport(file, limit = 200) {
  const lines = readFileSync(file, "utf8").split("\n");
  const start = lines.findIndex((line) => /Failed Tests|Failed Suites|Unhandled Errors/.test(line));
  return (start >= 0 ? lines.slice(start, start + limit) : lines.slice(-limit)).join("\n");
}

const args = process.argv.slice(2);
const flag = (name) => args.find((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
const verbose = flag("verbose") !== undefined;
const installOnly = flag("install") !== undefined;
const linesSpec = flag("lines")?.split("=")[1];
const unknownFlags = args.filter(
  (arg) =>
    arg.startsWith("--") &&
    !["verbose", "install", "lines"].some(
      (name) => arg === `--${name}` || arg.startsWith(`--${name}=`),
    ),
);
if (unknownFlags.length > 0) {
  console.error(`node-lines: unknown option ${unknownFlags.join(" ")}`);
  process.exit(2);
}
const given = args.filter((arg) => !arg.startsWith("--"));
/** The test files and folders to run on a line: as given, else the default for that line. */
const selectionFor = (line) =>
  given.length > 0
    ? given
    : [...EVERY_LINE, ...(majorOf(line.version) === majorOf(process.version) ? [] : BOUNDARY)];

let lines;
try {
  lines = pickLines(linesSpec);
} catch (error) {
  console.error(`node-lines: ${error.message}`);
  process.exit(2);
}

const nodes = new Map();
for (const line of lines) {
  const started = Date.now();
  try {
    nodes.set(line.version, install(line));
  } catch (error) {
    console.error(`node-lines: Node ${line.version}: ${error.message}`);
    process.exit(1);
  }
  const seconds = (Date.now() - started) / 1000;
  if (!quiet || seconds > 1) console.log(`node ${line.version}: ${nodes.get(line.version)}`);
}
const tooOld = given.length > 0 || linesSpec ? [] : TOO_OLD;
for (const line of tooOld) {
  try {
    nodes.set(line.version, install(line));
  } catch (error) {
    console.error(`node-lines: Node ${line.version}: ${error.message}`);
    process.exit(1);
  }
}
if (installOnly) process.exit(0);

const exists = (entry) => existsSync(join(root, entry));
for (const entry of new Set(lines.flatMap(selectionFor))) {
  if (!exists(entry)) console.log(`node-lines: ${entry} does not exist (yet); left out`);
}

const logs = join(cache, "logs");
mkdirSync(logs, { recursive: true });
let failures = 0;
const summary = [];
for (const line of lines) {
  const node = nodes.get(line.version);
  const present = selectionFor(line).filter(exists);
  if (present.length === 0) {
    console.error(`node-lines: nothing to run on Node ${line.version}: no entry exists`);
    process.exit(1);
  }
  console.log(`node-lines: Node ${line.version}: vitest run ${present.join(" ")}`);
  const logFile = join(logs, `node-${line.version}.log`);
  const reportFile = join(logs, `node-${line.version}.json`);
  rmSync(reportFile, { force: true });
  const started = Date.now();
  const code = await runVitest(node, present, logFile, reportFile);
  const seconds = Math.round((Date.now() - started) / 1000);
  const report = filesRun(reportFile);
  // Every entry that exists must have run at least one test file on this line.
  const unmatched =
    report === null
      ? []
      : present.filter((entry) => {
          const norm = entry.replace(/^\.\//, "");
          return !report.files.some(
            (file) => file === norm || file.startsWith(norm.endsWith("/") ? norm : `${norm}/`),
          );
        });
  const ok = code === 0 && report !== null && unmatched.length === 0;
  const counts = report
    ? `${report.passed} passed, ${report.failed} failed${report.skipped ? `, ${report.skipped} skipped` : ""} in ${report.files.length} files`
    : "no report";
  const text = `Node ${line.version.padEnd(8)} ${ok ? "pass" : "FAIL"}  ${String(seconds).padStart(4)} s  ${counts}`;
  summary.push(text);
  console.log(text);
  if (!ok) {
    failures++;
    if (unmatched.length > 0) console.log(`  ran no test file from: ${unmatched.join(", ")}`);
    if (!verbose || quiet) console.log(failureReport(logFile));
    console.log(`  full output: ${logFile}`);
  }
}
for (const line of tooOld) {
  const problems = refusalProblems(nodes.get(line.version), line.version);
  const text = `Node ${line.version.padEnd(8)} ${problems.length === 0 ? "pass" : "FAIL"}  refused with one clear error (CLI, import, require)`;
  summary.push(text);
  console.log(text);
  for (const problem of problems) console.log(`  ${problem}`);
  if (problems.length > 0) failures++;
}
if (summary.length > 1) {
  console.log("node-lines summary:");
  for (const text of summary) console.log(`  ${text}`);
}
process.exit(failures === 0 ? 0 : 1);
