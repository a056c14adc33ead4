/**
 * The bytes a host holds on a task's behalf for its HTTP requests: request bodies while they are
 * sent, response bodies while they arrive (redirect bodies included), across every request of
 * one attempt that is in flight. They count against the task's `ram`: without this, a task with
 * a small `ram` could make its host buffer 256 requests × 16 MiB outside its sandbox. A response
 * leaves the count when it is handed to the task, which copies it into its own memory at once.
 */
import { formatBytes } from "../config/units.ts";
import { NetworkError } from "../policy/requests.ts";

export class HeldBytes {
  #held = 0;

  /** `limit`: the task's `ram` in bytes. */
  constructor(readonly limit: number) {}

  /** Bytes held now, for all requests. */
  get held(): number {
    return this.#held;
  }

  /** A tally for one request: what it takes, it gives back in one `releaseAll`. */
  forRequest(): RequestHold {
    let taken = 0;
    return {
      take: (bytes, what) => {
        if (this.#held + bytes > this.limit) throw this.#refusal(bytes, taken, what);
        this.#held += bytes;
        taken += bytes;
      },
      release: (bytes) => {
        const given = Math.min(bytes, taken);
        this.#held -= given;
        taken -= given;
      },
      releaseAll: () => {
        this.#held -= taken;
        taken = 0;
      },
    };
  }

  #refusal(bytes: number, takenByThis: number, what: string): NetworkError {
    const ram = formatBytes(this.limit);
    const others = this.#held - takenByThis;
    const mine = amount(takenByThis + bytes);
    if (others <= 0) {
      return new NetworkError(
        `${what} is larger than the task's ram (${ram}): the host holds a task's request and response bodies only up to its ram; the request was aborted`,
      );
    }
    return new NetworkError(
      `${what} does not fit in the task's ram (${ram}) next to the ${amount(others)} its other requests in flight hold on the host (this one needs ${mine} so far); the request was aborted`,
    );
  }
}

export interface RequestHold {
  /** Counts `bytes` more for this request, or throws the task's error when they do not fit. */
  take(bytes: number, what: string): void;
  /** Gives back `bytes` this request no longer holds (a redirect's body, once followed). */
  release(bytes: number): void;
  /** Gives back everything this request took (it ended, or its body went to the task). */
  releaseAll(): void;
}

/** A hold that never refuses: for a network host used without a task's `ram`. */
export const UNLIMITED_HOLD: RequestHold = {
  take: () => {},
  release: () => {},
  releaseAll: () => {},
};

/** A size for a message: exact below 1 MiB, else in MiB with one decimal. */
function amount(bytes: number): string {
  return bytes < 2 ** 20 ? `${bytes} bytes` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
