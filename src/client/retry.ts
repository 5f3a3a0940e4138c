/**
 * The retry topology of `consume({ onFailure: "retry" })`, and the attempt count of a delivery.
 *
 *   failed delivery ──publish (confirmed, mandatory)──▶ warren.retry (headers exchange)
 *        routing key: the consumer's queue               │ header warren-retry-delay = "500"
 *        then ack the original                          ▼
 *                                           warren.retry.500ms (x-message-ttl 500,
 *                                                               x-dead-letter-exchange "")
 *                                                        │ expires: dead-lettered to the default
 *                                                        ▼ exchange with its routing key
 *                                                the consumer's queue again
 *
 * Names start with `warren.`, or with the consumer's `retry.prefix` (so that teams or applications
 * sharing a vhost keep their own): `<prefix>.retry`, `<prefix>.retry.<ms>ms`, `<prefix>.dead.<queue>`.
 * One exchange and one delay queue per distinct delay, shared by every queue and every consumer
 * (each delay queue holds messages of one TTL, so they expire in order). A message goes back to
 * the queue whose consumer failed, whatever its name, because the routing key it is published
 * with is that queue's name and the delay queue dead-letters it to the default exchange keeping
 * that key. Everything is declared through the client's recorded topology: restored after every
 * recovery.
 *
 * Attempts are read from the message, never from memory: the broker's `x-death` counts (one
 * `expired` entry per delay queue, counted up on every pass), `warren-retries` (set by warren on
 * each copy: RabbitMQ 4.0, and 3.13.0–3.13.2, no longer count the x-death of a message a client
 * re-publishes; `x-` headers are the broker's, so warren's own headers have no `x-` prefix),
 * and the quorum queues' `x-delivery-count` (redeliveries after a requeue or a lost channel).
 */
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { FieldTable, FieldValue } from "../protocol/table.js";
import type { TopologySpec } from "./topology.js";

/** The default first part of the retry topology's names (`retry.prefix`). */
export const DEFAULT_RETRY_PREFIX = "warren";
/** The headers exchange every retry goes through (with the default prefix). */
export const RETRY_EXCHANGE = `${DEFAULT_RETRY_PREFIX}.retry`;
/** The header the retry exchange routes on (not `x-` prefixed: headers exchanges ignore those). */
export const RETRY_DELAY_HEADER = "warren-retry-delay";
/** Retries so far, written on each copy (not `x-` prefixed: those belong to the broker). */
export const RETRIES_HEADER = "warren-retries";
/**
 * The exchange the message was first published to, written on its first retried copy and kept on
 * later ones (copies come back through the default exchange, so `fields.exchange` is then "").
 */
export const ORIGINAL_EXCHANGE_HEADER = "warren-original-exchange";
/** The routing key the message was first published with, written beside ORIGINAL_EXCHANGE_HEADER. */
export const ORIGINAL_ROUTING_KEY_HEADER = "warren-original-routing-key";
/** Why warren dead-lettered a message into its own dead-letter queue. */
export const DEATH_REASON_HEADER = "warren-death-reason";

/** The retry exchange: `warren.retry`, or `<prefix>.retry`. */
export function retryExchangeName(prefix = DEFAULT_RETRY_PREFIX): string {
  return `${prefix}.retry`;
}

/** The delay queue for `ms`: `warren.retry.500ms`, or `<prefix>.retry.500ms`. */
export function delayQueueName(ms: number, prefix = DEFAULT_RETRY_PREFIX): string {
  return `${retryExchangeName(prefix)}.${ms}ms`;
}

/**
 * The dead-letter queue warren declares for a queue (`deadLetter: "queue"`): `warren.dead.<queue>`,
 * or `<prefix>.dead.<queue>`.
 */
export function deadLetterQueueName(queue: string, prefix = DEFAULT_RETRY_PREFIX): string {
  return `${prefix}.dead.${queue}`;
}

/** The exchange, delay queues and bindings for these delays, plus a dead-letter queue if given. */
export function retryTopology(
  delays: readonly number[],
  deadLetterQueue?: string,
  prefix = DEFAULT_RETRY_PREFIX,
): TopologySpec {
  const distinct = [...new Set(delays)];
  const exchange = retryExchangeName(prefix);
  return {
    exchanges: [{ name: exchange, type: "headers", durable: true }],
    queues: [
      ...distinct.map((ms) => ({
        name: delayQueueName(ms, prefix),
        durable: true,
        arguments: { "x-message-ttl": ms, "x-dead-letter-exchange": "" },
      })),
      ...(deadLetterQueue !== undefined ? [{ name: deadLetterQueue, durable: true }] : []),
    ],
    bindings: distinct.map((ms) => ({
      exchange,
      queue: delayQueueName(ms, prefix),
      arguments: { "x-match": "all", [RETRY_DELAY_HEADER]: String(ms) },
    })),
  };
}

function toNumber(v: FieldValue | undefined): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  return undefined;
}

/**
 * Retries behind this message: the larger of x-death's expired passes through warren's delay queues
 * (those of the retry topology with this `prefix`) and warren-retries.
 */
export function retriesOf(headers: FieldTable | undefined, prefix = DEFAULT_RETRY_PREFIX): number {
  if (headers === undefined) return 0;
  const delayQueues = `${retryExchangeName(prefix)}.`;
  let fromDeaths = 0;
  const deaths = headers["x-death"];
  if (Array.isArray(deaths)) {
    for (const d of deaths) {
      if (d === null || typeof d !== "object" || Array.isArray(d) || d instanceof Date) continue;
      const t = d as FieldTable;
      const q = t["queue"];
      if (t["reason"] === "expired" && typeof q === "string" && q.startsWith(delayQueues))
        fromDeaths += toNumber(t["count"]) ?? 1;
    }
  }
  return Math.max(fromDeaths, toNumber(headers[RETRIES_HEADER]) ?? 0);
}

/**
 * The attempt a delivery is: 1 + retries + redeliveries (a quorum queue's x-delivery-count;
 * elsewhere 1 if the broker flags it redelivered, 0 if not).
 */
export function attemptOf(
  properties: BasicProperties,
  redelivered: boolean,
  prefix = DEFAULT_RETRY_PREFIX,
): number {
  const h = properties.headers;
  const count = toNumber(h?.["x-delivery-count"]);
  return 1 + retriesOf(h, prefix) + (count ?? (redelivered ? 1 : 0));
}

/**
 * The broker will count this message's next delivery: a quorum queue's x-delivery-count is on it, or
 * it was never redelivered (the redelivered flag then counts one). A classic queue's redelivered
 * message is not: its flag is already spent.
 */
export function redeliveryCountable(properties: BasicProperties, redelivered: boolean): boolean {
  return !redelivered || toNumber(properties.headers?.["x-delivery-count"]) !== undefined;
}

/** The delay before retry number `retries + 1`: `delays[retries]`, the last one repeating. */
export function delayFor(delays: readonly number[], retries: number): number {
  return delays[Math.min(retries, delays.length - 1)]!;
}

/** The properties of the copy sent to a delay queue (or warren's dead-letter queue). */
export function copyProperties(
  properties: BasicProperties,
  fields: { exchange: string; routingKey: string },
  extra: FieldTable,
): BasicProperties {
  const headers: FieldTable = { ...properties.headers };
  // A quorum queue's count is of the original message; the copy is a new one.
  delete headers["x-delivery-count"];
  if (headers[ORIGINAL_EXCHANGE_HEADER] === undefined) {
    headers[ORIGINAL_EXCHANGE_HEADER] = fields.exchange;
    headers[ORIGINAL_ROUTING_KEY_HEADER] = fields.routingKey;
  }
  Object.assign(headers, extra);
  const copy: BasicProperties = { ...properties, headers };
  // A per-message TTL would cut the delay short, then vanish at dead-lettering anyway.
  delete copy.expiration;
  return copy;
}
