import type { Envelope } from "../adapters/browser/index.ts";

/**
 * "Run on the edge": the page posts the task to the Worker that serves it (examples/workers
 * with `--env playground`), at `run` beside the page, and shows the envelope the Worker answers.
 */

/** What the Worker's `POST /run` answers: the envelope, or an error the Worker refused with. */
export type EdgeOutcome =
  | { kind: "envelope"; envelope: Envelope & { files?: Record<string, unknown> } }
  | { kind: "refused"; status: number; errorType: string; message: string };

export const TOKEN_KEY = "capsule-edge-token";

/**
 * Whether a Capsule Worker serves this page: its `GET health` answers `{"status":"ok"}` as
 * JSON. A static host or a dev server answers 404 or a page of HTML instead.
 */
export async function edgeAvailable(base: string): Promise<boolean> {
  try {
    const response = await fetch(new URL("health", base), { cache: "no-store" });
    if (!response.ok || !response.headers.get("content-type")?.includes("application/json")) {
      return false;
    }
    const body = (await response.json()) as { status?: unknown };
    return body.status === "ok";
  } catch {
    return false;
  }
}

export async function runOnEdge(
  base: string,
  request: { code: string; language: "ts"; args: string[]; env: Record<string, string> },
  token: string,
  signal: AbortSignal,
): Promise<EdgeOutcome> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token.trim() !== "") headers.authorization = `Bearer ${token.trim()}`;
  let response: Response;
  try {
    response = await fetch(new URL("run", base), {
      method: "POST",
      headers,
      body: JSON.stringify(request),
      cache: "no-store",
      signal,
    });
  } catch (error) {
    const stopped = signal.aborted;
    return {
      kind: "refused",
      status: 0,
      errorType: stopped ? "cancelled" : "network_error",
      message: stopped
        ? "stopped: the page stopped waiting (the Worker may still finish the run)"
        : `the Worker could not be reached: ${error}`,
    };
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    return {
      kind: "refused",
      status: response.status,
      errorType: "bad_response",
      message: `the Worker answered HTTP ${response.status} without JSON`,
    };
  }
  const shaped = body as Partial<Envelope> & { error?: { error_type?: string; message?: string } };
  if (response.ok && shaped.execution !== undefined) {
    return { kind: "envelope", envelope: body as Envelope };
  }
  return {
    kind: "refused",
    status: response.status,
    errorType: shaped.error?.error_type ?? "bad_response",
    message: shaped.error?.message ?? `the Worker answered HTTP ${response.status}`,
  };
}
