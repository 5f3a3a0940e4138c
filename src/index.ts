/**
 * warren — a supervised, self-healing AMQP 0-9-1 client for Node.js.
 *
 * This entry point exports the low-level API (Connection, Channel), the error
 * tree and the protocol helpers that users need (field-table typing).
 */
export {
  type BasicProperties,
  type Body,
  Channel,
  type ChannelEvents,
  type ConsumeHandlers,
  type ConsumeOptions,
  type ExchangeBindOptions,
  type ExchangeDeclareOptions,
  type ExchangeDeleteOptions,
  type GetOptions,
  type Message,
  type PublishOptions,
  type QosOptions,
  type QueueBindOptions,
  type QueueDeclareOptions,
  type QueueDeclareResult,
  type QueueDeleteOptions,
  type QueuePurgeOptions,
  type QueueUnbindOptions,
  type ReturnedMessage,
} from "./amqp/channel.js";
export {
  Connection,
  type ConnectionEvents,
  type ConnectionOptions,
  MIN_FRAME_MAX,
  type ServerInfo,
  VERSION,
} from "./amqp/connection.js";
export { type AuthMechanism, type ParsedUrl, parseUrl, redactUrl } from "./amqp/url.js";
export * from "./errors.js";
export {
  Decimal,
  Field,
  type FieldTable,
  type FieldType,
  type FieldValue,
  TypedValue,
} from "./protocol/table.js";
export type { TlsOptions } from "./transport/socket.js";

import { Connection, type ConnectionOptions } from "./amqp/connection.js";

/** Opens a connection: `await connect("amqp://guest:guest@localhost")`. */
export function connect(options: ConnectionOptions | string = {}): Promise<Connection> {
  return Connection.open(options);
}
