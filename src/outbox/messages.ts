/**
 * What the outbox holds and hands around: messages as appended, as stored (with their row id), and
 * their properties in AMQP's own encoding (so every header type survives exactly). Free of
 * better-sqlite3's types, which the published declarations must not need (an optional peer).
 */
import {
  type BasicProperties,
  decodeBasicProperties,
  encodeBasicProperties,
} from "../protocol/generated/spec.js";

/** A message the outbox holds. */
export interface StoredMessage {
  /** Its row id: increasing, so the order of appends. */
  id: number;
  /** The exchange to publish to. */
  exchange: string;
  /** The routing key. */
  routingKey: string;
  /** Published mandatory (returned when unroutable, then dead-lettered). */
  mandatory: boolean;
  /** Its properties, as they were published (messageId included). */
  properties: BasicProperties;
  /** Its body. */
  body: Buffer;
}

export interface NewMessage {
  exchange: string;
  routingKey: string;
  mandatory: boolean;
  properties: BasicProperties;
  body: Buffer;
}

/** A message to insert, its properties encoded (once, when it was appended). */
export interface EncodedMessage {
  msg: NewMessage;
  props: Buffer;
}

export interface Row {
  id: number;
  exchange: string;
  routing_key: string;
  mandatory: number;
  properties: Buffer;
  body: Buffer;
}

export interface DeadMove {
  id: number;
  reason: string;
  at: number;
}

let scratch = Buffer.allocUnsafe(64 * 1024);

/** AMQP's encoding of `p` (throws what the encoder throws for a header that cannot be encoded). */
export function encodeProps(p: BasicProperties): Buffer {
  for (;;) {
    try {
      const end = encodeBasicProperties(scratch, 0, p);
      return Buffer.from(scratch.subarray(0, end));
    } catch (e) {
      if (!(e instanceof RangeError) || scratch.length > 64 * 1024 * 1024) throw e;
      scratch = Buffer.allocUnsafe(scratch.length * 4);
    }
  }
}

export function toMessage(r: Row): StoredMessage {
  return {
    id: r.id,
    exchange: r.exchange,
    routingKey: r.routing_key,
    mandatory: r.mandatory === 1,
    properties: decodeBasicProperties(r.properties, 0),
    body: r.body,
  };
}
