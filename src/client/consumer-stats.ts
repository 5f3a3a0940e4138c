/**
 * A consumer's counts (`consumer.stats`): plain numbers, updated as deliveries are settled, and
 * mirrored in its metrics.
 */
import type { ConsumeStats } from "../observability/observers.js";
import type { DeliveryOutcome } from "../observability/tracing.js";
import type { ConsumerStats } from "./consumer-types.js";
import type { Settle } from "./delivery.js";

export class ConsumerCounts implements ConsumerStats {
  delivered = 0;
  acked = 0;
  failed = 0;
  requeued = 0;
  retried = 0;
  deadLettered = 0;
  inFlight = 0;
  subscribeErrors = 0;
  lastSubscribeError: string | undefined = undefined;

  /** A settlement sent to the broker, counted here and in the metrics. */
  settled(op: Settle, outcome: DeliveryOutcome, metrics: ConsumeStats | undefined): void {
    if (outcome === "retry") {
      this.retried++;
      metrics?.retried?.();
    } else if (outcome === "dead_letter" || op === "reject") {
      this.deadLettered++;
      metrics?.rejected();
    } else if (op === "ack") {
      this.acked++;
      metrics?.acked();
    } else {
      this.requeued++;
      metrics?.nacked();
    }
  }

  toJSON(): ConsumerStats {
    return { ...this };
  }
}
