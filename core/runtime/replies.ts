import { MAX_ENVELOPE_CHARS } from "../journal/bounds.ts";
import { refuseDestination } from "../policy/requests.ts";
import type { AttemptCapabilities } from "./attempt.ts";
import type { HostRequest } from "./envelope.ts";

/**
 * Host replies a resumed run takes from the journal (core/journal/replies.ts): the responses to
 * the fetches a task made, so that a task run again takes the path it took the first time.
 */

/** Where one fetch was made: which task run, attempt, and its place among the attempt's. */
export interface ReplyPlace {
  taskRunId: string;
  attempt: number;
  /** 0 for the attempt's first fetch, 1 for its second, and so on. */
  index: number;
  /** How many sub-task calls the attempt had made before this fetch. */
  callsBefore: number;
  /** SHA-256 of the request (method, URL, headers, redirect mode and body), hex. */
  keySha256: string;
}

/** A response as the task saw it: its status line and headers as JSON, and its body. */
export interface HostReply {
  meta: string;
  body: Uint8Array;
}

/** Wraps every fetch of a journaled run: recorded after it is made, answered on a resume. */
export interface ReplyHook {
  /** Before the fetch is made: the journal's reply to answer it with, or null to make it. */
  before(place: ReplyPlace): Promise<HostReply | null>;
  /** After a fetch was made and answered. */
  after(place: ReplyPlace, reply: HostReply): void;
}

/** The reason a replayed fetch shows in `host_requests`. */
export const REPLAYED_REASON = "answered from the journal of the resumed run, not made again";

/**
 * The attempt's fetch, through the run's ReplyHook: each fetch is numbered in the order the task
 * makes it, and a reply the journal holds for that place and request is returned without a
 * request. Only a request the task's allowedHosts admit now is answered so: the journal never
 * widens what a task may reach. A failed fetch is not recorded (a resume makes it again).
 */
export function replyingFetch(
  fetch: AttemptCapabilities["fetch"],
  hook: ReplyHook,
  attempt: { taskRunId: string; attempt: number; callsMade(): number },
  allowedHosts: readonly string[],
  record: (request: HostRequest) => void,
): AttemptCapabilities["fetch"] {
  let fetches = 0;
  return async (requestJson, body, signal) => {
    const index = fetches++;
    const callsBefore = attempt.callsMade();
    const keySha256 = await requestKey(requestJson, body);
    const place = {
      taskRunId: attempt.taskRunId,
      attempt: attempt.attempt,
      index,
      callsBefore,
      keySha256,
    };
    const { method, url } = JSON.parse(requestJson) as { method?: unknown; url?: unknown };
    const replayed = admitted(url, allowedHosts) ? await hook.before(place) : null;
    if (replayed !== null) {
      const { status } = JSON.parse(replayed.meta) as { status?: number };
      record({
        method: String(method ?? "GET"),
        url: String(url),
        status: typeof status === "number" ? status : null,
        reason: REPLAYED_REASON,
        duration_ms: 0,
      });
      return { meta: replayed.meta, body: replayed.body.slice() };
    }
    const reply = await fetch(requestJson, body, signal);
    // One the journal would not keep is not handed over (from a pool's thread, a copy).
    if (4 * Math.ceil(reply.body.byteLength / 3) + reply.meta.length <= MAX_ENVELOPE_CHARS) {
      hook.after(place, reply);
    }
    return reply;
  };
}

function admitted(url: unknown, allowedHosts: readonly string[]): boolean {
  try {
    refuseDestination(new URL(String(url)), allowedHosts);
    return true;
  } catch {
    return false;
  }
}

async function requestKey(requestJson: string, body: Uint8Array | undefined): Promise<string> {
  const text = new TextEncoder().encode(requestJson);
  const whole = new Uint8Array(text.byteLength + 1 + (body?.byteLength ?? 0));
  whole.set(text);
  if (body) whole.set(body, text.byteLength + 1);
  const digest = await crypto.subtle.digest("SHA-256", whole);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
