/**
 * The consumers of one channel, by tag: a consume with a tag of our choosing is registered before
 * it is sent (deliveries may follow its consume-ok at once); one without gets the broker's tag from
 * consume-ok, and consume-oks come in the order of the consumes, so an unknown tag in a consume-ok
 * belongs to the oldest server-named one. A delivery goes to its consumer's handler; one whose
 * consumer is gone (cancelled meanwhile) is dropped, and the broker requeues it if unacked.
 */
import { ConfigError } from "../errors.js";
import type { BasicProperties, Method } from "../protocol/generated/spec.js";
import type { ConsumeHandlers, Message } from "./channel-types.js";

export class ChannelConsumers {
  private readonly byTag = new Map<string, ConsumeHandlers>();
  /** Handlers of consumes sent without a tag, waiting for consume-ok to name them. */
  private serverNamed: ConsumeHandlers[] = [];

  /**
   * @param channel the channel number (named in errors)
   * @param handlerError a handler threw or its promise rejected
   */
  constructor(
    private readonly channel: number,
    private readonly handlerError: (error: unknown, message: Message) => void,
  ) {}

  /** Registers the handlers of a consume about to be sent (`tag` "" for a server-named one). */
  add(tag: string, handlers: ConsumeHandlers): void {
    if (tag === "") {
      this.serverNamed.push(handlers);
      return;
    }
    if (this.byTag.has(tag))
      throw new ConfigError(`consumer tag "${tag}" is already in use on channel ${this.channel}`);
    this.byTag.set(tag, handlers);
  }

  /** basic.consume-ok named `tag`. */
  confirmed(tag: string): void {
    if (this.byTag.has(tag)) return;
    const h = this.serverNamed.shift();
    if (h) this.byTag.set(tag, h);
  }

  /** The consume failed, or we cancelled it. */
  remove(tag: string): void {
    if (tag !== "") this.byTag.delete(tag);
  }

  /** The broker cancelled it (consumer_cancel_notify: its queue was deleted, or its node went down). */
  cancelledByBroker(tag: string): void {
    const h = this.byTag.get(tag);
    this.byTag.delete(tag);
    h?.onCancel?.(tag);
  }

  /** The channel closed: no consumer is left. */
  clear(): void {
    this.byTag.clear();
    this.serverNamed = [];
  }

  /** A whole basic.deliver: to its consumer's handler (dropped when `discard`: the channel is closing). */
  deliver(
    m: Extract<Method, { name: "basic.deliver" }>,
    properties: BasicProperties,
    body: Buffer,
    discard: boolean,
  ): void {
    const a = m.args;
    const h = this.byTag.get(a.consumerTag);
    // Cancelled meanwhile, or we are closing (AMQP says to discard): the broker requeues what is unacked.
    if (h === undefined || discard) return;
    const msg: Message = {
      body,
      properties,
      deliveryTag: a.deliveryTag,
      redelivered: a.redelivered,
      exchange: a.exchange,
      routingKey: a.routingKey,
      consumerTag: a.consumerTag,
    };
    try {
      const r = h.onMessage(msg);
      if (r && typeof (r as Promise<void>).then === "function") {
        (r as Promise<void>).then(undefined, (e) => this.handlerError(e, msg));
      }
    } catch (e) {
      this.handlerError(e, msg);
    }
  }
}
