/**
 * One accepted message on its way to the broker, and the properties it is sent with.
 */
import { randomUUID } from "node:crypto";
import type { Span } from "@opentelemetry/api";
import type { Channel } from "../amqp/channel.js";
import type { Body } from "../amqp/channel-types.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { NackCount } from "./nack-retry.js";
import type { PublishProperties } from "./publisher-types.js";

/** What an entry tells its publisher. */
export interface EntryOwner {
  spanDone(span: Span, err: Error | undefined): void;
  settled(e: Entry, err: Error | undefined): void;
}

/**
 * One accepted message. It is also the sink the channel settles on the broker's answer
 * (`resolve`/`reject` are called by the channel; `done`/`fail` settle the caller's promise),
 * so a publish allocates no closures.
 */
export class Entry implements NackCount {
  /** Nacks so far, and when the first came. */
  nacks = 0;
  firstNackAt = 0;
  /** When a nacked entry may be sent again. */
  due = 0;
  /** The channel it was last sent on. */
  channel: Channel | undefined = undefined;
  /** Its producer span, when tracing is on and the span is recorded (sampled). */
  span: Span | undefined = undefined;

  constructor(
    private readonly owner: EntryOwner,
    readonly exchange: string,
    readonly routingKey: string,
    readonly body: Body,
    readonly properties: BasicProperties,
    readonly mandatory: boolean,
    private readonly res: () => void,
    private readonly rej: (e: Error) => void,
    /** When it was accepted (for publishTimeout). */
    readonly since: number,
  ) {}

  /** Settles the caller's promise: confirmed (ending the producer span first, if any). */
  done(): void {
    if (this.span !== undefined) this.owner.spanDone(this.span, undefined);
    this.res();
  }

  /** Settles the caller's promise: failed for good. */
  fail(e: Error): void {
    if (this.span !== undefined) this.owner.spanDone(this.span, e);
    this.rej(e);
  }

  resolve(): void {
    this.owner.settled(this, undefined);
  }

  reject(e: Error): void {
    this.owner.settled(this, e);
  }
}

/**
 * The properties a publish sends: a copy with a generated messageId (a UUID) when `generateId` and
 * none is given, and `persistent` turned into deliveryMode (2 or 1) unless deliveryMode is given.
 */
export function normaliseProperties(p: PublishProperties | undefined, generateId = false): BasicProperties {
  // Most publishes give none: no copy to make (a rest spread is the slow part of this function).
  if (p === undefined) return generateId ? { messageId: randomUUID() } : {};
  const { persistent, ...rest } = p;
  const out: BasicProperties = { ...rest };
  if (generateId && out.messageId === undefined) out.messageId = randomUUID();
  if (persistent !== undefined && out.deliveryMode === undefined) out.deliveryMode = persistent ? 2 : 1;
  return out;
}
