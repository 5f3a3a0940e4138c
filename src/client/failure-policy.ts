/**
 * What becomes of a delivery whose handler failed (threw, rejected or timed out), as a table of
 * the consumer's policy, the message's attempt and the queue's kind:
 *
 * | case                                   | decision                         |
 * |----------------------------------------|----------------------------------|
 * | noAck                                  | auto_ack (the broker forgot it)  |
 * | retry, attempts left                   | retry (a delayed copy, then ack) |
 * | retry, last attempt                    | dead_letter                      |
 * | requeue or reject, a stream queue      | ack (streams refuse nack: 540)   |
 * | reject                                 | reject (the queue's DLX)         |
 * | requeue, attempts left                 | nack (requeued)                  |
 * | requeue, last attempt                  | reject                           |
 */
import type { FailurePolicy } from "./consumer-types.js";
import type { Settle } from "./delivery.js";

export type FailureDecision = "auto_ack" | "retry" | "dead_letter" | "ack" | "reject" | "nack";

export interface FailedDelivery {
  policy: FailurePolicy;
  noAck: boolean;
  /** From a stream queue (it keeps every message: nack and reject are refused). */
  stream: boolean;
  /** This delivery's attempt (1 for the first). */
  attempt: number;
  maxAttempts: number;
}

export function onFailure(f: FailedDelivery): FailureDecision {
  if (f.noAck) return "auto_ack";
  const last = f.attempt >= f.maxAttempts;
  if (f.policy === "retry") return last ? "dead_letter" : "retry";
  if (f.stream) return "ack";
  if (f.policy === "reject") return "reject";
  return last ? "reject" : "nack";
}

/** What is sent to the broker for the decisions settled directly (retry and dead_letter publish first). */
export const SETTLE_OF: Record<Exclude<FailureDecision, "retry" | "dead_letter">, Settle> = {
  auto_ack: "ack",
  ack: "ack",
  reject: "reject",
  nack: "requeue",
};
