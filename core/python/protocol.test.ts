import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../encoding/base64.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import { checkPythonRequest } from "./protocol.ts";

/** What a Python sandbox sends can be anything: the runtime acts only on well-formed requests. */
describe("checkPythonRequest", () => {
  it("accepts each well-formed request as exactly what it names", () => {
    expect(checkPythonRequest({ op: "run_subtask", name: "a", argsJson: "[]", extra: 1 })).toEqual({
      op: "run_subtask",
      name: "a",
      argsJson: "[]",
    });
    expect(checkPythonRequest({ op: "fs", call: "stat", argsJson: "{}" })).toEqual({
      op: "fs",
      call: "stat",
      argsJson: "{}",
    });
    expect(checkPythonRequest({ op: "fs", call: "write", argsJson: "{}", data: "AA==" })).toEqual({
      op: "fs",
      call: "write",
      argsJson: "{}",
      data: "AA==",
    });
    expect(checkPythonRequest({ op: "fetch", requestJson: "{}" })).toEqual({
      op: "fetch",
      requestJson: "{}",
    });
    expect(checkPythonRequest({ op: "fuel_exhausted", budget: "10" })).toEqual({
      op: "fuel_exhausted",
      budget: "10",
    });
  });

  it("refuses anything else with an Error, and never returns a request with a field of the wrong type", () => {
    const ops = fc.constantFrom("run_subtask", "fs", "fetch", "fuel_exhausted", "read_host_file");
    const field = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.object(), fc.boolean());
    const message = fc.oneof(
      fc.anything(),
      fc.record(
        {
          op: ops,
          name: field,
          argsJson: field,
          call: field,
          data: field,
          requestJson: field,
          budget: field,
        },
        { requiredKeys: ["op"] },
      ),
    );
    fc.assert(
      fc.property(message, (value) => {
        let request: ReturnType<typeof checkPythonRequest>;
        try {
          request = checkPythonRequest(value);
        } catch (error) {
          expect(error).toBeInstanceOf(Error);
          expect((error as Error).message).toBe("the runtime does not understand this request");
          return;
        }
        for (const [key, got] of Object.entries(request)) {
          expect(typeof got, key).toBe("string");
        }
        expect(["run_subtask", "fs", "fetch", "fuel_exhausted"]).toContain(request.op);
      }),
      { numRuns: fuzzRuns(500) },
    );
  });
});

describe("base64 for the bridge", () => {
  it("round-trips any bytes, as Node's Buffer encodes them", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70_000 }), (bytes) => {
        const text = toBase64(bytes);
        expect(text).toBe(Buffer.from(bytes).toString("base64"));
        expect(fromBase64(text)).toEqual(bytes);
      }),
      { numRuns: fuzzRuns(40) },
    );
  });
});
