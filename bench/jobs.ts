/** What the orchestrator (run.ts) and a worker (worker.ts) exchange. */
import type { ClientName } from "./clients/types.js";

export type Workload = "publish" | "confirm" | "consume" | "large" | "rpc" | "pubsub";

/** A timed part of a workload; "large", "rpc" and "pubsub" have two. */
export type Phase =
  | "publish"
  | "confirm"
  | "consume"
  | "large-publish"
  | "large-consume"
  | "rpc-sequential"
  | "rpc-concurrent"
  | "pubsub-noack"
  | "pubsub-ack";

/** The timed parts of the scaling workloads ("size" has two). */
export type ScalePhase = "consumers" | "publishers" | "size-publish" | "size-consume";

/**
 * The scaling workloads of bench/scaling.ts: `parallel` consumers, each on its own channel and
 * queue; `parallel` confirmed publishers, each on its own channel, to one queue; one body size
 * published with confirms, then consumed.
 */
export type ScaleWorkload = "consumers" | "publishers" | "size";

export const WORKLOADS: readonly Workload[] = ["publish", "confirm", "consume", "large", "rpc", "pubsub"];

export const PHASES_OF: Record<Workload, readonly Phase[]> = {
  publish: ["publish"],
  confirm: ["confirm"],
  consume: ["consume"],
  large: ["large-publish", "large-consume"],
  rpc: ["rpc-sequential", "rpc-concurrent"],
  pubsub: ["pubsub-noack", "pubsub-ack"],
};

export interface Job {
  client: ClientName;
  workload: Workload | ScaleWorkload;
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
  /** Confirm window (confirm, large); publish promises outstanding at most (pubsub). */
  maxInFlight: number;
  /** Consumer prefetch (consume, large, pubsub). */
  prefetch: number;
  /** Write a CPU profile of each timed phase into this directory. */
  profileDir: string | undefined;
  /** Bound on one timed phase, in ms. */
  phaseTimeoutMs: number;
  /** rpc: calls of the concurrent phase (`count` is the sequential one's), and how many at once. */
  rpcConcurrentCount: number;
  rpcConcurrency: number;
  /** consumers, publishers: how many at once (consumers: one per queue of `queues`). */
  parallel?: number;
  /** consumers: the timed queues, each pre-filled with `count` ÷ their number messages. */
  queues?: string[];
}

export interface PhaseResult {
  phase: Phase | ScalePhase;
  messages: number;
  bytes: number;
  elapsedMs: number;
  /** process.cpuUsage() deltas over the timed phase, in µs. */
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Minor page faults over the timed phase (fresh memory being touched). */
  minorPageFaults: number;
  /** rpc: each call's round trip (call to reply); pubsub: each message's publish → deliver; percentiles in µs. */
  latencyUs?: { p50: number; p99: number };
}

export type WorkerReply =
  | { ok: true; phases: PhaseResult[]; maxRssKiB: number; profiles: string[] }
  | { ok: false; error: string };
