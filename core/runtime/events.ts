import type { EnvelopeError } from "./envelope.ts";

export type LifecycleEventType =
  | "created"
  | "running"
  | "retrying"
  | "completed"
  | "failed"
  | "timed_out"
  /** Stopped from outside: its caller cancelled it, or the task that started it ended first. */
  | "cancelled";

/** Where a sub-task call sits in its parent: the parent's attempt, and the call's place in it. */
export interface SubtaskCall {
  /** The calling task run's attempt (1 = first). */
  attempt: number;
  /** 0 for the attempt's first sub-task call, 1 for its second, and so on. */
  index: number;
}

/** One step in a task's life, reported to `onEvent` as it happens. */
export interface LifecycleEvent {
  type: LifecycleEventType;
  task: string;
  /** This run of the task (all its attempts); unique across threads and workers. */
  id: string;
  /** The run of the task that started this one as a sub-task; null for the entry task. */
  parentId: string | null;
  /** 0 for the entry task, 1 for its sub-tasks, and so on. */
  depth: number;
  /** 1 for the first attempt. */
  attempt: number;
  /** Milliseconds since the epoch. */
  at: number;
  duration_ms?: number;
  fuel_consumed?: number;
  error?: EnvelopeError;
  /** On a sub-task's `created` event: which call of its parent started it. */
  call?: SubtaskCall;
}

export type LifecycleListener = (event: LifecycleEvent) => void;
