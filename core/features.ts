/**
 * What a host can and cannot do, as data. Each adapter exports its table (`features`); the
 * conformance suite reads it to know which outcome a case must have on that host, so a declared
 * difference is checked like any other behaviour instead of being skipped.
 */
export interface HostFeatures {
  host: "node" | "browser" | "workers";
  /** Where `allowedFiles` live: a directory on disk, the page's OPFS, or the request's files. */
  files: "directory" | "opfs" | "request";
  /**
   * An allowedFiles directory that does not exist: refused (config_error) where it would be a
   * typo on a real disk, created where a request cannot send an empty directory (Workers).
   */
  missingGrantDirectory: "config_error" | "created";
  /** The guest can create symbolic links (each is re-checked on use); elsewhere `symlink` is EINVAL. */
  symlinks: boolean;
  /** The caller can mount host directories (`mounts`, `--mount`). */
  mounts: boolean;
  /** How the guest's `fetch` reaches the network. */
  network: "node-http" | "platform-fetch";
  /**
   * The address a host name resolved to is checked too (private addresses refused after DNS).
   * Platform fetch never reveals it: there, names are checked, and the platform's own rules apply.
   */
  checksResolvedAddress: boolean;
  /** The page's CORS rules apply on top of allowedHosts: a response without CORS headers is unreadable. */
  cors: boolean;
  /**
   * A redirect to another origin is read and re-checked. A page cannot see where a cross-origin
   * redirect goes, so there every such redirect is refused rather than followed unchecked.
   */
  followsCrossOriginRedirects: boolean;
  /** How a bad run request is answered: a `config_error` envelope, or an HTTP 400 before any run. */
  badRequest: "envelope" | "http-400";
  /**
   * What stops a guest that will not reach an interrupt check: its thread or Web Worker is
   * terminated; on Workers only the fuel bound per millisecond of timeout (no threads to kill).
   */
  runawayGuard: "terminate-thread" | "terminate-worker" | "fuel-per-timeout";
  /** Where sub-tasks run: other threads, other Web Workers, or the same isolate (interleaved). */
  subtasks: "threads" | "web-workers" | "same-isolate";
  /**
   * Python tasks: each attempt in a locked-down child process (Node), in a Worker inside an
   * opaque-origin sandboxed frame whose CSP allows no requests (a page), or not on this host.
   * Which protections a Node child gets on this machine: `pythonIsolation()` in the Node adapter.
   */
  python: "child-process" | "opaque-origin-worker" | "unavailable";
  /**
   * Whose memory bounds the sandboxes of every run on the host together (the sum of their `ram`,
   * core/runtime/memory-budget.ts): a Workers isolate (128 MB in all, shared by its concurrent
   * requests), the Node process (half the machine's memory, at most 8 GiB), or the page (1 GiB, a quarter of
   * `navigator.deviceMemory` where that is less). A task asking more than the whole budget is a
   * config_error; a sub-task past what is left is refused (permission_denied); an entry task
   * waits for other runs to end, then is refused.
   */
  memoryBudget: "isolate" | "process" | "page";
  /** That budget in bytes, at most (a page with less device memory has less). */
  memoryBudgetBytes: number;
}
