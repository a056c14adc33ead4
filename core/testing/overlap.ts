/** The most of `intervals` ([start, end] pairs) that overlap at any one moment. */
export function mostAtOnce(intervals: readonly (readonly [number, number])[]): number {
  const edges = intervals
    .flatMap(([start, end]): [number, number][] => [
      [start, 1],
      [end, -1],
    ])
    // An interval that ends where another starts does not overlap it.
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, step] of edges) {
    now += step;
    most = Math.max(most, now);
  }
  return most;
}

/**
 * A Python task file whose `main` gathers `count` sub-tasks that each sleep `sleepSeconds` and
 * return when they ran, by the task's clock (real time at the attempt's start, then its work and
 * waits): for checking how many sandboxes run at once.
 */
export function gatheredNaps(count: number, sleepSeconds: number): string {
  return `import asyncio\nimport time\nfrom capsule import task\n\n@task(name="nap", timeout="120s")\nasync def nap():\n    start = time.time()\n    time.sleep(${sleepSeconds})\n    return [start, time.time()]\n\n@task(name="main", timeout="300s")\nasync def main():\n    naps = await asyncio.gather(*[nap() for _ in range(${count})])\n    return [envelope["result"] for envelope in naps]\n`;
}
