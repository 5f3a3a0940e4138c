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
 * | requeue, attempts left, countable      | nack (basic.reject, requeued)    |
 * | requeue, attempts left, not countable  | republish (a copy, then ack)     |
 * | requeue, last attempt                  | reject                           |
 *
 * "Countable": the broker will count the next delivery, so the attempt can be read from it: a quorum
 * queue's x-delivery-count (which basic.reject increments on every RabbitMQ version; basic.nack no
 * longer does on 4.3), or a first delivery's redelivered flag. A classic queue only says whether a
 * message was redelivered, not how often: requeued again it would come back as attempt 2 for ever,
 * so from then on warren sends a copy carrying its attempt (warren-retries) to the queue instead.
 */
import type { FailurePolicy } from "./consumer-types.js";
import type { Settle } from "./delivery.js";

export type FailureDecision = "auto_ack" | "retry" | "dead_letter" | "ack" | "reject" | "nack" | "republish";

export interface FailedDelivery {
  policy: FailurePolicy;
  noAck: boolean;
  /** From a stream queue (it keeps every message: nack and reject are refused). */
  stream: boolean;
  /** This delivery's attempt (1 for the first). */
  attempt: number;
  maxAttempts: number;
  /** The broker counts this message's next delivery (see the table): requeueing keeps the count. */
  countable: boolean;
}

export function onFailure(f: FailedDelivery): FailureDecision {
  if (f.noAck) return "auto_ack";
  const last = f.attempt >= f.maxAttempts;
  if (f.policy === "retry") return last ? "dead_letter" : "retry";
  if (f.stream) return "ack";
  if (f.policy === "reject") return "reject";
  if (last) return "reject";
  return f.countable ? "nack" : "republish";
}

/** What is sent to the broker for the decisions settled directly (retry, dead_letter and republish publish first). */
export const SETTLE_OF: Record<Exclude<FailureDecision, "retry" | "dead_letter" | "republish">, Settle> = {
  auto_ack: "ack",
  ack: "ack",
  reject: "reject",
  nack: "requeue",
};
