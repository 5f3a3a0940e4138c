/**
 * warren — a supervised, self-healing AMQP 0-9-1 client for Node.js.
 *
 * `connect()` gives the supervised client (reconnects, restores topology, resumes
 * consumers). `Connection.open()` gives the low-level connection and channels it is
 * built on. Also exported: the error tree and field-table typing.
 */

export type { BackoffOptions, IntensityOptions } from "../machines/backoff.js";
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
  type ConnectionObserver,
  type ConnectionOptions,
  MIN_FRAME_MAX,
  type OpenHooks,
  type ServerInfo,
  VERSION,
} from "./amqp/connection.js";
export { type AuthMechanism, type ParsedUrl, parseUrl, redactUrl } from "./amqp/url.js";
export { Client, type ClientEvents, type ClientOptions, connect, type StateChange } from "./client/client.js";
export {
  type ConsumedMessage,
  type ConsumeOptions as ClientConsumeOptions,
  Consumer,
  type ConsumerEvents,
  type ConsumerStats,
  type ConsumeStats,
  type FailurePolicy,
  type MessageHandler,
  type MessagesOptions,
  type RetryOptions,
  type StreamOffset,
} from "./client/consumer.js";
export { MessageStream } from "./client/messages.js";
export {
  normaliseProperties,
  type OutgoingMessage,
  Publisher,
  type PublisherObserver,
  type PublisherOptions,
  type PublishProperties,
  type PublishStats,
} from "./client/publisher.js";
export {
  attemptOf,
  DEATH_REASON_HEADER,
  deadLetterQueueName,
  delayQueueName,
  ORIGINAL_EXCHANGE_HEADER,
  ORIGINAL_ROUTING_KEY_HEADER,
  RETRIES_HEADER,
  RETRY_DELAY_HEADER,
  RETRY_EXCHANGE,
  retriesOf,
} from "./client/retry.js";
export {
  DIRECT_REPLY_TO,
  RPC_ERROR_HEADER,
  type RpcCallOutcome,
  RpcClient,
  type RpcClientEvents,
  type RpcClientOptions,
  type RpcClientStats,
  type RpcHandler,
  type RpcReply,
  type RpcRequest,
  type RpcResponse,
  type RpcServeOutcome,
  RpcServer,
  type RpcServerEvents,
  type RpcServerOptions,
  type RpcServerStats,
} from "./client/rpc.js";
export type { BindingSpec, DeclareResult, ExchangeSpec, QueueSpec, TopologySpec } from "./client/topology.js";
export * from "./errors.js";
export {
  FAULTS,
  type FaultClass,
  type FaultRow,
  isCallerFault,
  isPermanent,
  isReported,
  isTransient,
} from "./faults.js";
export { type MetricsServer, type ServeMetricsOptions, serveMetrics } from "./observability/http.js";
export {
  CONNECTION_STATES,
  DEFAULT_EXCHANGE_LABEL,
  type MetricsOptions,
  OTHER_LABEL,
  type PublishFailure,
  publishFailureReason,
} from "./observability/metrics.js";
export {
  type DeliveryOutcome,
  TraceAttributes,
  TraceEvents,
  type TracingOption,
  type TracingOptions,
} from "./observability/tracing.js";
export { type DeadLetter, Outbox, type OutboxOptions, type StoredMessage } from "./outbox/outbox.js";
export {
  Decimal,
  Field,
  type FieldTable,
  type FieldType,
  type FieldValue,
  TypedValue,
} from "./protocol/table.js";
export type { TlsOptions } from "./transport/socket.js";
