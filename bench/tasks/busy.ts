import { task } from "@capsule-run/sdk";

// Spends about a second of guest compute, then returns.
export const main = task({ name: "main", compute: "HIGH" }, () => {
  let x = 0;
  for (let i = 0; i < 3_000_000; i++) x = (x + i * 7) % 1_000_003;
  return x;
});
