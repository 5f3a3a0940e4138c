/**
 * warren — a supervised, self-healing AMQP 0-9-1 client for Node.js.
 *
 * `connect()` gives the supervised client (reconnects, restores topology, resumes
 * consumers). `Connection.open()` gives the low-level connection and channels it is
 * built on. Also exported: the error tree and field-table typing.
 */

export type { BackoffOptions, IntensityOptions } from "../machines/backoff.js";
export { Channel } from "./amqp/channel.js";
export type {
  BasicConsumeOptions,
  BasicProperties,
  Body,
  ChannelEvents,
  ConsumeHandlers,
  ConsumeOptions,
  ExchangeBindOptions,
  ExchangeDeclareOptions,
  ExchangeDeleteOptions,
  GetOptions,
  Message,
  PublishOptions,
  QosOptions,
  QueueBindOptions,
  QueueDeclareOptions,
  QueueDeclareResult,
  QueueDeleteOptions,
  QueuePurgeOptions,
  QueueUnbindOptions,
  ReturnedMessage,
} from "./amqp/channel-types.js";
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
export { Consumer } from "./client/consumer.js";
export type {
  ConsumedMessage,
  ConsumerEvents,
  /** @deprecated renamed ConsumerOptions. */
  ConsumerOptions as ClientConsumeOptions,
  ConsumerOptions,
  ConsumerState,
  ConsumerStats,
  FailurePolicy,
  MessageHandler,
  MessagesOptions,
  RetryOptions,
  StreamOffset,
} from "./client/consumer-types.js";
export type { CredentialOutcome, CredentialsChange } from "./client/credential-refresh.js";
export type { CredentialRefreshOptions, Credentials, CredentialsProvider } from "./client/credentials.js";
export { MessageStream } from "./client/messages.js";
export {
  normaliseProperties,
  type OutgoingMessage,
  Publisher,
  type PublisherOptions,
  type PublishProperties,
} from "./client/publisher.js";
export {
  attemptOf,
  DEATH_REASON_HEADER,
  DEFAULT_RETRY_PREFIX,
  deadLetterQueueName,
  delayQueueName,
  ORIGINAL_EXCHANGE_HEADER,
  ORIGINAL_ROUTING_KEY_HEADER,
  RETRIES_HEADER,
  RETRY_DELAY_HEADER,
  RETRY_EXCHANGE,
  retriesOf,
  retryExchangeName,
} from "./client/retry.js";
export {
  RpcClient,
  type RpcClientEvents,
  type RpcClientOptions,
  type RpcReply,
  type RpcRequest,
} from "./client/rpc-client.js";
export { DIRECT_REPLY_TO, RPC_ERROR_HEADER } from "./client/rpc-protocol.js";
export {
  type RpcHandler,
  type RpcResponse,
  RpcServer,
  type RpcServerEvents,
  type RpcServerOptions,
} from "./client/rpc-server.js";
export type { BindingSpec, DeclareResult, ExchangeSpec, QueueSpec, TopologySpec } from "./client/topology.js";
export * from "./errors.js";
export {
  type CredentialsFault,
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
  DEFAULT_EXCHANGE_LABEL,
  OTHER_LABEL,
  type PublishFailure,
  publishFailureReason,
} from "./observability/metrics/labels.js";
export type { MetricsOptions, MetricsRegistry } from "./observability/metrics/options.js";
export {
  type ClientState,
  CONNECTION_STATES,
  type ConsumeStats,
  type PublisherObserver,
  type PublishStats,
  RPC_CALL_OUTCOMES,
  RPC_SERVE_OUTCOMES,
  type RpcCallOutcome,
  type RpcClientStats,
  type RpcServeOutcome,
  type RpcServerStats,
} from "./observability/observers.js";
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
export {
  type ClientStatus,
  type ConsumerStatus,
  type ErrorInfo,
  type Health,
  type LoopDelayStats,
  type PublisherStatus,
  type Rates,
  type Readiness,
  type Recovery,
  type RestartBudget,
  type RpcClientStatus,
  type RpcServerStatus,
  type StatusServer,
  type StatusServerOptions,
  type StatusSnapshot,
  serveStatus,
  type Transition,
} from "./status/server.js";
export type { TlsOptions } from "./transport/socket.js";
