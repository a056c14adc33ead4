/**
 * Fuel per millisecond of the clock a Python task or a component reads: about what this engine spends per millisecond of
 * real time, so a task's timings read like real ones. Measured on Node 20, 2 cores: 7.6M
 * (string building, split, join, JSON), 12.7M (recursive calls), 14.7M (objects, dicts,
 * sorting) and 16.2M (an arithmetic loop) per ms on runs of 100-200 ms; 4.6-14M on runs under
 * 50 ms, before V8 has optimized the interpreter's hot code.
 */
export const FUEL_PER_CLOCK_MS = 10_000_000;
