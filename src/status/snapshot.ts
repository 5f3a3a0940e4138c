/**
 * The snapshot of /status.json: read from the client's own accessors and the recorder, at the
 * moment it is asked for. Hosts are host:port and addresses redacted URLs: no credentials.
 */
import type { Client } from "../client/client.js";
import type { Consumer } from "../client/consumer.js";
import type { Publisher } from "../client/publisher.js";
import type { RpcServer } from "../client/rpc-server.js";
import { VERSION } from "../version.js";
import type { ReadinessInput } from "./readiness.js";
import type { StatusRecorder } from "./recorder.js";
import type {
  ClientStatus,
  ConsumerStatus,
  PublisherStatus,
  RpcServerStatus,
  StatusSnapshot,
} from "./types.js";

/** The whole snapshot; `events` counts the clients of /events. */
export function snapshot(
  client: Client,
  recorder: StatusRecorder,
  events: { clients: number; dropped: number },
): StatusSnapshot {
  return {
    time: new Date().toISOString(),
    version: VERSION,
    since: new Date(recorder.since).toISOString(),
    client: clientStatus(client, recorder),
    consumers: client.consumers.map((c) => consumerStatus(client, c)),
    publishers: client.publishers.map(publisherStatus),
    rpc: {
      clients: client.rpcClients.map((r) => ({
        channel: r.channelId,
        ready: r.ready,
        inFlight: r.inFlight,
        queued: r.queued,
      })),
      servers: client.rpcServers.map(rpcServerStatus),
    },
    transitions: recorder.transitions,
    events,
  };
}

export function clientStatus(client: Client, recorder: StatusRecorder): ClientStatus {
  const o = client.connection?.options;
  return {
    state: client.state,
    degraded: client.degraded,
    host: o !== undefined ? hostPort(o.host, o.port) : null,
    addresses: client.addresses,
    hostAttempts: client.hostAttempts().map((h) => ({ ...h, lastError: h.lastError ?? null })),
    blocked: blockedReason(client),
    lastRecovery: recorder.lastRecovery,
    restartBudget: client.restartBudget,
    stateSince: recorder.stateSince !== undefined ? new Date(recorder.stateSince).toISOString() : null,
    timeIn: recorder.timeIn(),
    connections: client.connections.map((c) => ({
      role: c.role,
      name: c.name ?? null,
      state: c.state,
      degraded: c.degraded,
      host: c.host === "" ? null : c.host,
      blocked: c.state === "blocked" ? (c.connection?.blockedReason ?? "blocked") : null,
    })),
  };
}

/** Why the broker blocks one of the client's connections, or null. */
function blockedReason(client: Client): string | null {
  if (client.state !== "blocked") return null;
  const c = client.connections.find((x) => x.state === "blocked");
  return c?.connection?.blockedReason ?? null;
}

/** What /readyz decides from. */
export function readinessInput(client: Client): ReadinessInput {
  return {
    state: client.state,
    degraded: client.degraded,
    blocked: blockedReason(client),
    consumers: client.consumers.map((c) => ({
      queue: c.queue,
      state: c.state,
      lastSubscribeError: c.stats.lastSubscribeError ?? null,
    })),
  };
}

function consumerStatus(client: Client, c: Consumer): ConsumerStatus {
  const s = c.stats;
  return {
    queue: c.queue,
    queueName: client.queueName(c.queue),
    state: c.state,
    channel: c.channelId,
    prefetch: c.prefetch,
    concurrency: Number.isFinite(c.concurrency) ? c.concurrency : null,
    running: c.running,
    stats: {
      delivered: s.delivered,
      acked: s.acked,
      failed: s.failed,
      requeued: s.requeued,
      retried: s.retried,
      deadLettered: s.deadLettered,
      inFlight: s.inFlight,
      subscribeErrors: s.subscribeErrors,
      lastSubscribeError: s.lastSubscribeError ?? null,
    },
  };
}

function publisherStatus(p: Publisher): PublisherStatus {
  return {
    channel: p.channelId,
    pending: p.pending,
    stored: p.stored,
    deadLetters: p.gauges().deadLetters,
    counters: p.counters,
    totals: p.totals,
  };
}

function rpcServerStatus(s: RpcServer): RpcServerStatus {
  return {
    queue: s.queue,
    state: s.consumer?.state ?? "starting",
    channel: s.consumer?.channelId ?? null,
    inFlight: s.inFlight,
    served: s.served,
  };
}

/** host:port, an IPv6 address in brackets. */
function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
