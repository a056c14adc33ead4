import { task } from "@capsule-run/sdk";

// Each call to analyzeData runs in a NEW sandbox with its own limits and resolves to its
// envelope. Calls started together run concurrently.
export const analyzeData = task(
  {
    name: "analyze_data",
    compute: "MEDIUM",
    ram: "512MB",
    timeout: "30s",
    maxRetries: 1,
  },
  (dataset: number[]): object => {
    return { processed: dataset.length, status: "complete" };
  },
);

export const main = task(
  {
    name: "main",
    compute: "HIGH",
  },
  async () => {
    const batches = [
      [1, 2, 3, 4, 5],
      [6, 7],
      [8, 9, 10],
    ];
    const envelopes = await Promise.all(batches.map((batch) => analyzeData(batch)));
    return envelopes.map((envelope) => envelope.result);
  },
);
