import { runCode } from "../adapters/node/agent.ts";
import { Session } from "../adapters/node/session.ts";

export interface SessionBench {
  statelessP50Ms: number;
  statelessP90Ms: number;
  sessionP50Ms: number;
  sessionP90Ms: number;
  /** The session's state image after the set-up cell, in KiB. */
  imageKb: number;
  /** Same calls, after a cell that left ~8 MiB of live data in the session. */
  largeSessionP50Ms: number;
  largeImageKb: number;
}

const RUNS = 200;
const WARMUP = 30;

/**
 * A session call against a stateless call on Node: the same small cell (`counter() + 1`-sized),
 * back to back, each a fresh sandbox; the session's also restores its image and captures the new
 * one. Wall-clock per call as the caller sees it.
 */
export async function benchSessions(log: (line: string) => void): Promise<SessionBench> {
  log(`sessions: ${RUNS} stateless calls vs ${RUNS} session calls (after ${WARMUP} warm-up each)`);
  const stateless = await timeCalls(async () => {
    const envelope = await runCode({ language: "javascript", code: "let n = 1; n + 1" });
    if (!envelope.success) throw new Error(envelope.error?.message);
  });
  const session = new Session("javascript");
  const large = new Session("javascript");
  try {
    await session.run("let n = 0; const next = () => ++n;");
    const small = await timeCalls(() => session.run("next() + 1"));
    const imageKb = Math.round(session.stateBytes / 1024);
    await large.run(
      "let n = 0; const next = () => ++n; const data = []; for (let i = 0; i < 128; i++) data.push(new Uint8Array(65536).fill(i));",
    );
    const big = await timeCalls(() => large.run("next() + data.length"));
    return {
      statelessP50Ms: stateless.p50,
      statelessP90Ms: stateless.p90,
      sessionP50Ms: small.p50,
      sessionP90Ms: small.p90,
      imageKb,
      largeSessionP50Ms: big.p50,
      largeImageKb: Math.round(large.stateBytes / 1024),
    };
  } finally {
    await session.close();
    await large.close();
  }
}

async function timeCalls(call: () => Promise<unknown>): Promise<{ p50: number; p90: number }> {
  for (let i = 0; i < WARMUP; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await call();
    times.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return percentiles(times);
}

/** The 50th and 90th percentiles of call times, in ms to two decimals. */
export function percentiles(times: readonly number[]): { p50: number; p90: number } {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) =>
    Math.round((sorted[Math.floor(q * (sorted.length - 1))] ?? 0) * 100) / 100;
  return { p50: at(0.5), p90: at(0.9) };
}
