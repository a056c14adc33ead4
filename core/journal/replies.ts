/**
 * Replay of fetch responses on resume. A resumed run runs its entry task again (resume.ts); the
 * sub-task calls that completed are answered from the journal, and so are the fetches those
 * finished steps depended on, so the task takes the path it took the first time.
 *
 * Each fetch of a journaled run is recorded with its place: the task run and attempt that made
 * it, its index among that attempt's fetches, how many sub-task calls the attempt had made before
 * it, and a hash of the request (method, URL, headers, redirect mode and body). A fetch of the
 * resumed run is answered from the journal when:
 *   - its task run stands for a journaled one (the entry task, or a sub-task that runs again
 *     because it had not completed), and no call of its attempt has run anew and ended yet (from
 *     then on the task may take another path, as for calls);
 *   - the journaled task run made a fetch at the same index with the same request hash;
 *   - and that fetch came before a call that completed in the journaled attempt: a step that
 *     finished after it may have depended on it. A fetch made after the last finished step, such
 *     as the one a failed step made, is made again: replaying it would only repeat the failure.
 * Only a request the task's allowedHosts admit now is answered (core/runtime/replies.ts), a
 * failed fetch (no response) is not recorded and is made again, and a response over the
 * journal's bounds is not kept (journal.ts), so that fetch is made again too.
 */
import { fromBase64 } from "../encoding/base64.ts";
import type { HostReply, ReplyHook, ReplyPlace } from "../runtime/replies.ts";
import type { RunRecorder } from "./journal.ts";
import type { CallMatcher } from "./resume.ts";
import type { JournalStore } from "./store.ts";

interface JournaledReply {
  attempt: number;
  callsBefore: number;
  keySha256: string;
  meta: string;
  bodyBase64: string;
}

/** Answers a resumed run's fetches from the journaled run's replies (see the top of this file). */
export class ReplyMatcher {
  readonly #calls: CallMatcher;
  /** `${journaled task run}:${index}` -> the replies at that place, latest attempt first. */
  readonly #replies = new Map<string, JournaledReply[]>();
  /** `${journaled task run}:${attempt}` -> the highest index of its calls that completed. */
  readonly #lastCompleted = new Map<string, number>();

  constructor(store: JournalStore, calls: CallMatcher) {
    this.#calls = calls;
    const runId = calls.fromRunId;
    for (const r of store.all(
      "SELECT * FROM replies WHERE run_id = ? ORDER BY task_run_id, seq, attempt DESC",
      [runId],
    )) {
      const key = `${String(r.task_run_id)}:${Number(r.seq)}`;
      const list = this.#replies.get(key) ?? [];
      list.push({
        attempt: Number(r.attempt),
        callsBefore: Number(r.calls_before),
        keySha256: String(r.key_sha256),
        meta: String(r.meta_json),
        bodyBase64: String(r.body_base64),
      });
      this.#replies.set(key, list);
    }
    for (const c of store.all(
      `SELECT parent_id, attempt, max(seq) AS last FROM calls
         WHERE run_id = ? AND state = 'completed' AND envelope_json IS NOT NULL
         GROUP BY parent_id, attempt`,
      [runId],
    )) {
      this.#lastCompleted.set(`${String(c.parent_id)}:${Number(c.attempt)}`, Number(c.last));
    }
  }

  /** The journal's reply to answer this fetch with, or null to make it. */
  match(place: ReplyPlace): HostReply | null {
    const journaled = this.#calls.counterpart(place.taskRunId);
    if (journaled === undefined || this.#calls.isFresh(place.taskRunId, place.attempt)) return null;
    const found = this.#replies
      .get(`${journaled}:${place.index}`)
      ?.find(
        (r) =>
          r.keySha256 === place.keySha256 &&
          (this.#lastCompleted.get(`${journaled}:${r.attempt}`) ?? -1) >= r.callsBefore,
      );
    return found === undefined ? null : { meta: found.meta, body: fromBase64(found.bodyBase64) };
  }
}

export interface ReplyHookOptions {
  /** Records the run's replies; null when the journal cannot be written. */
  recorder: RunRecorder | null;
  /** Set for a resumed run. */
  matcher?: ReplyMatcher;
  /** Runs one journal write, so that a failed write never fails the run. */
  guard: (write: () => void) => void;
}

/**
 * The ReplyHook a journaled run runs with: it records each fetch's response and, in a resumed
 * run, answers the ones a finished step depended on. A replayed reply is recorded again under
 * the new run, whose record stays whole for a resume of its own.
 */
export function journalReplyHook(options: ReplyHookOptions): ReplyHook {
  const { recorder, matcher, guard } = options;
  return {
    async before(place) {
      let reply: HostReply | null = null;
      try {
        reply = matcher?.match(place) ?? null;
      } catch {
        // A reply the journal cannot give back whole is not given: the fetch is made.
      }
      if (reply !== null) guard(() => recorder?.reply(place, reply));
      return reply;
    },
    after(place, reply) {
      guard(() => recorder?.reply(place, reply));
    },
  };
}
