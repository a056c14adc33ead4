import { describe, expect, it } from "vitest";
import { createRequestLog, MAX_LISTED_REQUESTS, MAX_REQUEST_TEXT } from "./request-log.ts";

describe("the host_requests log", () => {
  it("lists every request up to its bound, then counts the rest in one last entry", () => {
    const log = createRequestLog();
    for (let i = 0; i < MAX_LISTED_REQUESTS; i++) {
      log.add({ method: "GET", url: `https://a.example/${i}`, status: null, reason: "denied" });
    }
    expect(log.list).toHaveLength(MAX_LISTED_REQUESTS);
    expect(log.list.at(-1)?.url).toBe(`https://a.example/${MAX_LISTED_REQUESTS - 1}`);
    log.add({ method: "GET", url: "https://a.example/x", status: null });
    expect(log.list).toHaveLength(MAX_LISTED_REQUESTS + 1);
    expect(log.list.at(-1)?.reason).toBe(
      `and 1 more request, not listed (host_requests lists at most ${MAX_LISTED_REQUESTS})`,
    );
    for (let i = 0; i < 5000; i++)
      log.add({ method: "GET", url: "https://a.example/y", status: 200 });
    expect(log.list).toHaveLength(MAX_LISTED_REQUESTS + 1);
    expect(log.list.at(-1)?.reason).toMatch(/^and 5001 more requests, not listed/);
  });

  it("cuts a long URL, method or reason and says how long it was", () => {
    const log = createRequestLog();
    const url = `https://a.example/${"a".repeat(10_000)}`;
    log.add({ method: "X".repeat(5000), url, status: null, reason: "r".repeat(3000) });
    const [entry] = log.list;
    expect(entry?.url).toBe(`${url.slice(0, MAX_REQUEST_TEXT)}... (${url.length} characters)`);
    expect(entry?.method.length).toBeLessThan(MAX_REQUEST_TEXT + 40);
    expect(entry?.reason?.length).toBeLessThan(MAX_REQUEST_TEXT + 40);
    log.add({ method: "GET", url: "https://a.example/", status: 204, duration_ms: 3 });
    expect(log.list[1]).toEqual({
      method: "GET",
      url: "https://a.example/",
      status: 204,
      duration_ms: 3,
    });
  });
});
