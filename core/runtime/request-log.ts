import type { HostRequest } from "./envelope.ts";

/**
 * An envelope's `host_requests`, bounded. A task pays fuel for each request it tries, but a refused
 * one costs it little and the host would keep its record: a loop of refused requests could grow an
 * envelope (and the host's memory, outside the task's `ram`) without limit. So at most
 * MAX_LISTED_REQUESTS are listed, each URL and reason cut at MAX_REQUEST_TEXT characters, and the
 * rest are counted in one last entry.
 */
export const MAX_LISTED_REQUESTS = 1024;
export const MAX_REQUEST_TEXT = 2048;

export interface RequestLog {
  /** The list the envelope shows; its last entry counts what was left out, once anything was. */
  readonly list: HostRequest[];
  add(request: HostRequest): void;
}

export function createRequestLog(): RequestLog {
  const list: HostRequest[] = [];
  let unlisted = 0;
  return {
    list,
    add(request) {
      if (list.length < MAX_LISTED_REQUESTS) {
        list.push(bounded(request));
        return;
      }
      unlisted++;
      const summary: HostRequest = {
        method: "",
        url: "",
        status: null,
        reason: `and ${unlisted} more request${unlisted === 1 ? "" : "s"}, not listed (host_requests lists at most ${MAX_LISTED_REQUESTS})`,
      };
      if (unlisted === 1) list.push(summary);
      else list[list.length - 1] = summary;
    },
  };
}

function bounded(request: HostRequest): HostRequest {
  const cut = (text: string) =>
    text.length <= MAX_REQUEST_TEXT
      ? text
      : `${text.slice(0, MAX_REQUEST_TEXT)}... (${text.length} characters)`;
  return {
    ...request,
    method: cut(String(request.method)),
    url: cut(String(request.url)),
    ...(request.reason === undefined ? {} : { reason: cut(request.reason) }),
  };
}
