/**
 * The publishes of one confirm-mode channel waiting for the broker's answer: each one's sink is
 * resolved by basic.ack, rejected with PublishNackedError by basic.nack, with UnroutableError
 * when it was mandatory and came back with basic.return first (RabbitMQ sends the return before
 * the ack of the same message), and with the channel's close reason when it closed first.
 */
import { PublishNackedError, UnroutableError } from "../errors.js";
import type { ConfirmSink, ReturnedMessage } from "./channel-types.js";
import { ConfirmTracker } from "./confirms.js";

interface Pending {
  sink: ConfirmSink;
  /** For matching basic.return to a mandatory publish. */
  exchange?: string;
  routingKey?: string;
  messageId?: string | undefined;
  /** The published body (kept only for mandatory publishes), compared byte for byte with a return's. */
  body?: Uint8Array;
  returned?: ReturnedMessage;
}

/** What identifies a mandatory publish when the broker returns it. */
export interface MandatoryPublish {
  exchange: string;
  routingKey: string;
  messageId: string | undefined;
  body: Uint8Array;
}

export class PublishConfirms {
  private readonly tracker = new ConfirmTracker<Pending>();

  constructor(private readonly channel: number) {}

  /** Publishes not yet acked or nacked. */
  get size(): number {
    return this.tracker.size;
  }

  /** The sequence number the next publish gets. */
  get nextSeq(): number {
    return this.tracker.nextSeq;
  }

  /** Takes the next sequence number for a publish just sent; `sink` (if any) hears the answer. */
  add(sink: ConfirmSink | undefined, mandatory?: MandatoryPublish): void {
    if (sink === undefined) {
      this.tracker.add(undefined);
      return;
    }
    this.tracker.add(mandatory === undefined ? { sink } : { sink, ...mandatory });
  }

  /** A returned mandatory message belongs to the earliest unconfirmed publish it matches; its ack then rejects it. */
  returned(r: ReturnedMessage): void {
    for (const p of this.tracker.values()) {
      if (
        p.exchange === r.exchange &&
        p.routingKey === r.routingKey &&
        p.returned === undefined &&
        p.messageId === r.properties.messageId &&
        p.body !== undefined &&
        p.body.length === r.body.length &&
        Buffer.compare(p.body, r.body) === 0
      ) {
        p.returned = r;
        return;
      }
    }
  }

  /** basic.ack or basic.nack for `tag` (and every lower one when `multiple`). */
  settle(tag: number, multiple: boolean, nack: boolean): void {
    this.tracker.settle(tag, multiple, (seq, p) => {
      if (nack)
        p.sink.reject(
          new PublishNackedError(
            `the broker nacked publish #${seq} on channel ${this.channel}; publish it again`,
          ),
        );
      else if (p.returned) p.sink.reject(new UnroutableError(p.returned));
      else p.sink.resolve();
    });
  }

  /** The channel closed: every unsettled publish rejects with `err`. */
  failAll(err: Error): void {
    for (const [, p] of this.tracker.drain()) p.sink.reject(err);
  }
}
