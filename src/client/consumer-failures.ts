/**
 * What a consumer does with a delivery whose handler failed, once the failure policy decided
 * (failure-policy.ts): requeue or reject it, publish a copy to the retry topology, publish a copy
 * that carries its attempt (when the broker cannot count it), or move it to warren's dead-letter
 * queue. Copies are confirmed and mandatory; only then is the original acked, else it is given back.
 */
import type { Channel } from "../amqp/channel.js";
import type { DeliveryOutcome } from "../observability/tracing.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { FailurePolicy } from "./consumer-types.js";
import type { Delivery, Settle } from "./delivery.js";
import { onFailure, SETTLE_OF } from "./failure-policy.js";
import {
  copyProperties,
  DEATH_REASON_HEADER,
  delayFor,
  RETRIES_HEADER,
  RETRY_DELAY_HEADER,
  redeliveryCountable,
  retriesOf,
  retryExchangeName,
} from "./retry.js";

/** What failure handling needs of its consumer. */
export interface FailureHost {
  /** The queue as given (for the warning when nobody listens to errors). */
  readonly queue: string;
  /** The queue's name on the broker now: where retried copies come back to. */
  source(): string;
  /** The channel the consumer consumes on now (copies and settlements go there only). */
  currentChannel(): Channel | undefined;
  /** The delivery's channel is still the live one, and it is unsettled. */
  isLive(d: Delivery): boolean;
  /** Settles once on the live channel (see Consumer.settle). */
  settle(d: Delivery, op: Settle, outcome: DeliveryOutcome): boolean;
  /** Its channel died: nothing can be sent; the broker redelivers it. */
  abandon(d: Delivery): void;
  /** The consumer's "error" event; false when nobody listens. */
  emitError(error: unknown, d: Delivery): boolean;
}

export interface FailureOptions {
  policy: FailurePolicy;
  maxAttempts: number;
  noAck: boolean;
  /** The retry topology's delays, in ms. */
  delays: number[];
  /** warren's dead-letter queue, when the policy moves last failures there. */
  deadLetterQueue: string | undefined;
  retryPrefix: string;
}

export class FailureHandling {
  constructor(
    private readonly host: FailureHost,
    private readonly o: FailureOptions,
  ) {}

  /** A handler failed: report it, apply the policy. */
  fail(d: Delivery, error: unknown): void {
    d.failed = true;
    d.error = error;
    if (!this.host.emitError(error, d)) {
      process.emitWarning(
        `warren: a handler for queue "${this.host.queue}" failed and no "error" listener is set on the consumer: ${(error as Error)?.message ?? String(error)}`,
      );
    }
    if (d.settled) return; // the handler settled it itself before failing
    const stream = d.properties.headers?.["x-stream-offset"] !== undefined;
    const decision = onFailure({
      policy: this.o.policy,
      noAck: this.o.noAck,
      stream,
      attempt: d.attempt,
      maxAttempts: this.o.maxAttempts,
      countable: redeliveryCountable(d.properties, d.fields.redelivered),
    });
    if (decision === "retry") this.retry(d);
    else if (decision === "republish") this.republish(d);
    else if (decision === "dead_letter") this.deadLetter(d, stream);
    else this.host.settle(d, SETTLE_OF[decision], decision);
  }

  /** Publishes a copy to the retry exchange (confirmed), then acks the original. */
  private retry(d: Delivery): void {
    if (!this.onLiveChannel(d)) return;
    const retries = retriesOf(d.properties.headers, this.o.retryPrefix) + 1;
    const delay = delayFor(this.o.delays, retries - 1);
    const props = copyProperties(d.properties, d.fields, {
      [RETRY_DELAY_HEADER]: String(delay),
      [RETRIES_HEADER]: retries,
    });
    this.publishCopy(d, retryExchangeName(this.o.retryPrefix), this.host.source(), props, "retry");
  }

  /**
   * A requeue the broker could not count (a classic queue's message already redelivered): a copy
   * carrying its attempt so far (warren-retries) goes to the back of the queue, then the original is
   * acked, so the next attempt reads one more and `maxAttempts` ends the loop.
   */
  private republish(d: Delivery): void {
    if (!this.onLiveChannel(d)) return;
    const props = copyProperties(d.properties, d.fields, { [RETRIES_HEADER]: d.attempt });
    this.publishCopy(d, "", this.host.source(), props, "retry");
  }

  /** The last attempt failed: reject (the queue's DLX) or move it to warren's dead-letter queue. */
  private deadLetter(d: Delivery, stream: boolean): void {
    if (this.o.deadLetterQueue === undefined) {
      this.host.settle(d, stream ? "ack" : "reject", "dead_letter");
      return;
    }
    if (!this.onLiveChannel(d)) return;
    const props = copyProperties(d.properties, d.fields, {
      [DEATH_REASON_HEADER]: `failed ${d.attempt} attempts: ${errorMessage(d.error)}`.slice(0, 1000),
    });
    this.publishCopy(d, "", this.o.deadLetterQueue, props, "dead_letter");
  }

  /** False (and the delivery abandoned) when its channel is no longer the consumer's open one. */
  private onLiveChannel(d: Delivery): boolean {
    if (d.channel === this.host.currentChannel() && d.channel.isOpen) return true;
    this.host.abandon(d);
    return false;
  }

  private publishCopy(
    d: Delivery,
    exchange: string,
    routingKey: string,
    props: BasicProperties,
    outcome: "retry" | "dead_letter",
  ): void {
    d.channel.publish(exchange, routingKey, d.body, props, { mandatory: true }).then(
      () => this.host.settle(d, "ack", outcome),
      (e: unknown) => {
        // Not confirmed (nacked, unroutable, channel gone): keep the original instead.
        if (this.host.isLive(d)) {
          this.host.emitError(e, d);
          this.host.settle(d, "release", "nack");
        } else this.host.abandon(d);
      },
    );
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
