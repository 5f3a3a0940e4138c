/**
 * What bench/run.ts runs: message counts per workload (full and --quick), body sizes, windows,
 * prefetch, and each client's default frame_max.
 */
import type { ClientName } from "./clients/types.js";

export const MiB = 1024 * 1024;

export interface Sizes {
  publish: number;
  confirm: number;
  consume: number;
  large: number;
  /** rpc: sequential calls, then calls with RPC_CONCURRENCY outstanding. */
  rpc: number;
  rpcConcurrent: number;
  /** pubsub: messages of each of its two phases. */
  pubsub: number;
  warmupSmall: number;
  /**
   * large: messages published and consumed untimed first. More than two prefetch windows
   * (LARGE_PREFETCH, 50 MiB), so every client's heap has grown to hold what a window keeps in
   * flight before the timed phase: after only 10, the first 50 bodies of the timed consume landed
   * on fresh pages for a client whose publishing had not already grown its heap (warren copies
   * nothing when it publishes), 35-45 page faults per message against 1-2, which measured
   * the heap's growth rather than the client's steady cost.
   */
  warmupLarge: number;
  /**
   * rpc: untimed calls before each timed phase (sequential, then concurrent). Sequential calls
   * are few per second, so the JIT needs thousands to settle: after 500, 2 000 calls cost every
   * client about twice their steady state's CPU (warren 122 against 63 µs per call at 10 000,
   * @cloudamqp/amqp-client 129 against 57), which measures compilation, not the client.
   */
  warmupRpc: number;
}
export const FULL: Sizes = {
  publish: 100_000,
  confirm: 30_000,
  consume: 50_000,
  large: 300,
  rpc: 5_000,
  rpcConcurrent: 10_000,
  pubsub: 200_000,
  warmupSmall: 2_000,
  warmupLarge: 120,
  warmupRpc: 5_000,
};
export const QUICK: Sizes = {
  publish: 5_000,
  confirm: 2_000,
  consume: 5_000,
  large: 20,
  rpc: 300,
  rpcConcurrent: 1_000,
  pubsub: 5_000,
  warmupSmall: 500,
  warmupLarge: 3,
  warmupRpc: 300,
};
export const SMALL_BODY = 256;
export const LARGE_BODY = MiB;
export const PUBSUB_BODY = 128;
/** pubsub: publish promises outstanding at most (the clients with a drain signal use that instead). */
export const PUBSUB_WINDOW = 1000;
export const CONFIRM_WINDOW = 1000;
export const LARGE_CONFIRM_WINDOW = 50;
export const PREFETCH = 1000;
export const LARGE_PREFETCH = 50;
/** rpc: calls outstanding at once in the concurrent phase. */
export const RPC_CONCURRENCY = 50;
/**
 * frame_max: by default each client asks for its own default (warren and amqplib 131072,
 * rabbitmq-client and @cloudamqp/amqp-client 8192); --frame-max N makes all ask for N.
 * Neither setting is best for every peer: in a local trial rabbitmq-client consumed 1 MiB
 * messages at about half the CPU with 8192 than with 131072, @cloudamqp/amqp-client at
 * about 20% less with 131072.
 */
export const CLIENT_FRAME_MAX: Record<ClientName, number> = {
  warren: 131_072,
  "warren-client": 131_072,
  "warren-outbox": 131_072,
  "warren-observed": 131_072,
  "warren-status": 131_072,
  "warren-single": 131_072,
  amqplib: 131_072,
  "rabbitmq-client": 8192,
  "@cloudamqp/amqp-client": 8192,
};
