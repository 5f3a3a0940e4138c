/** What the orchestrator (run.ts) and a worker (worker.ts) exchange. */
import type { ClientName } from "./clients/types.js";

export type Workload = "publish" | "confirm" | "consume" | "large";

/** A timed part of a workload; "large" has two. */
export type Phase = "publish" | "confirm" | "consume" | "large-publish" | "large-consume";

export const WORKLOADS: readonly Workload[] = ["publish", "confirm", "consume", "large"];

export const PHASES_OF: Record<Workload, readonly Phase[]> = {
  publish: ["publish"],
  confirm: ["confirm"],
  consume: ["consume"],
  large: ["large-publish", "large-consume"],
};

export interface Job {
  client: ClientName;
  workload: Workload;
  url: string;
  /** frame_max to ask for; undefined keeps the client's default. */
  frameMax: number | undefined;
  /** The timed queue (pre-filled by the orchestrator for "consume"). */
  queue: string;
  /** Untimed warm-up of the same code path goes here first (pre-filled for "consume"). */
  warmupQueue: string;
  count: number;
  warmupCount: number;
  bodySize: number;
  /** Confirm window (confirm, large). */
  maxInFlight: number;
  /** Consumer prefetch (consume, large). */
  prefetch: number;
  /** Write a CPU profile of each timed phase into this directory. */
  profileDir: string | undefined;
  /** Bound on one timed phase, in ms. */
  phaseTimeoutMs: number;
}

export interface PhaseResult {
  phase: Phase;
  messages: number;
  bytes: number;
  elapsedMs: number;
  /** process.cpuUsage() deltas over the timed phase, in µs. */
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Minor page faults over the timed phase (fresh memory being touched). */
  minorPageFaults: number;
}

export type WorkerReply =
  | { ok: true; phases: PhaseResult[]; maxRssKiB: number; profiles: string[] }
  | { ok: false; error: string };
