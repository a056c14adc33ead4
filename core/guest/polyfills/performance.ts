import type { ChunkInstaller } from "../chunk.ts";

export interface PerformanceExports {
  performance: { readonly timeOrigin: number; now(): number; toJSON(): object };
}

const install: ChunkInstaller<PerformanceExports> = ({ host }) => {
  const { monotonic } = host;
  // The sandbox's start on the wall clock; now() counts from there on the monotonic clock.
  const timeOrigin = Date.now() - monotonic();

  class Performance {
    get timeOrigin(): number {
      return timeOrigin;
    }
    now(): number {
      return monotonic();
    }
    toJSON(): object {
      return { timeOrigin };
    }
    get [Symbol.toStringTag](): string {
      return "Performance";
    }
  }
  return { performance: new Performance() };
};
export default install;
