/**
 * The series of one exchange, one queue, and the RPC client and server of a client: bound once
 * when first used, then incremented as plain numbers on the hot paths.
 */
import type { Counter } from "prom-client";
import {
  type ConsumeStats,
  type PublishStats,
  RPC_CALL_OUTCOMES,
  RPC_SERVE_OUTCOMES,
  type RpcCallOutcome,
  type RpcClientStats,
  type RpcServeOutcome,
  type RpcServerStats,
} from "../observers.js";
import type { RegistryMetrics } from "./catalogue.js";
import { PUBLISH_FAILURES, type PublishFailure, publishFailureReason } from "./labels.js";
import { Count, type Series } from "./primitives.js";

/** One exchange's series, bound once. */
export class ExchangeStats implements PublishStats {
  private readonly publishedN: Count;
  private readonly confirmedN: Count;
  private readonly nackedN: Count;
  private readonly nackRetriesN: Count;
  private readonly returnedN: Count;
  private readonly republishedN: Count;
  private readonly latency: Series;
  private readonly failures = new Map<PublishFailure, Count>();

  constructor(m: RegistryMetrics, connection: string, label: string, counts: Count[]) {
    const count = (c: Counter<"connection" | "exchange">) => {
      const n = new Count(c.labels(connection, label));
      counts.push(n);
      return n;
    };
    this.publishedN = count(m.published);
    this.confirmedN = count(m.confirmed);
    this.nackedN = count(m.nacked);
    this.nackRetriesN = count(m.nackRetries);
    this.returnedN = count(m.returned);
    this.republishedN = count(m.republished);
    this.latency = m.confirmDuration.series({ connection, exchange: label });
    for (const reason of PUBLISH_FAILURES) {
      const n = new Count(m.publishFailed.labels(connection, label, reason));
      counts.push(n);
      this.failures.set(reason, n);
    }
  }

  published(): void {
    this.publishedN.inc();
  }
  confirmed(seconds?: number): void {
    this.confirmedN.inc();
    if (seconds !== undefined) this.latency.observe(seconds);
  }
  nacked(): void {
    this.nackedN.inc();
  }
  nackRetried(): void {
    this.nackRetriesN.inc();
  }
  returned(): void {
    this.returnedN.inc();
  }
  republished(): void {
    this.republishedN.inc();
  }
  failed(error: Error): void {
    this.failures.get(publishFailureReason(error))?.inc();
  }
}

/** One queue's series, bound once. */
export class QueueStats implements ConsumeStats {
  private readonly deliveredN: Count;
  private readonly ackedN: Count;
  private readonly nackedN: Count;
  private readonly rejectedN: Count;
  private readonly retriedN: Count;
  private readonly duration: Series;
  readonly restarts: Counter.Internal;
  /** Failed subscription attempts by error code (rare: no batching). */
  private readonly subscribeErrors = new Map<string, Counter.Internal>();

  constructor(
    private readonly m: RegistryMetrics,
    private readonly connection: string,
    private readonly label: string,
    counts: Count[],
  ) {
    const count = (c: Counter<"connection" | "queue">) => {
      const n = new Count(c.labels(connection, label));
      counts.push(n);
      return n;
    };
    this.deliveredN = count(m.delivered);
    this.ackedN = count(m.acked);
    this.nackedN = count(m.consumerNacked);
    this.rejectedN = count(m.rejected);
    this.duration = m.handlerDuration.series({ connection, queue: label });
    this.restarts = m.consumerRestarts.labels(connection, label);
    this.restarts.inc(0);
    this.retriedN = count(m.retried);
    // At 0 from the start, so that the first missing-queue error is an increase (the alert).
    this.subscribeErrorsOf("QUEUE_NOT_FOUND");
  }

  private subscribeErrorsOf(code: string): Counter.Internal {
    let c = this.subscribeErrors.get(code);
    if (c === undefined) {
      c = this.m.consumerSubscribeErrors.labels(this.connection, this.label, code);
      c.inc(0);
      this.subscribeErrors.set(code, c);
    }
    return c;
  }

  delivered(): void {
    this.deliveredN.inc();
  }
  handled(seconds: number): void {
    this.duration.observe(seconds);
  }
  acked(): void {
    this.ackedN.inc();
  }
  nacked(): void {
    this.nackedN.inc();
  }
  rejected(): void {
    this.rejectedN.inc();
  }
  retried(): void {
    this.retriedN.inc();
  }
  subscribeFailed(code: string): void {
    this.subscribeErrorsOf(code).inc();
  }
}

/** An RPC client's series (one set per client connection), bound once. */
export class RpcClientSeries implements RpcClientStats {
  private readonly outcomes = new Map<RpcCallOutcome, Count>();
  private readonly duration: Series;
  private readonly dropped: Count;
  private readonly retries: Count;

  constructor(m: RegistryMetrics, connection: string, counts: Count[]) {
    for (const o of RPC_CALL_OUTCOMES) {
      const n = new Count(m.rpcClientCalls.labels(connection, o));
      counts.push(n);
      this.outcomes.set(o, n);
    }
    this.duration = m.rpcClientDuration.series({ connection });
    this.dropped = new Count(m.rpcClientDropped.labels(connection));
    this.retries = new Count(m.rpcClientRetries.labels(connection));
    counts.push(this.dropped, this.retries);
  }

  settled(outcome: RpcCallOutcome, seconds: number): void {
    this.outcomes.get(outcome)?.inc();
    if (outcome === "ok" || outcome === "remote_error") this.duration.observe(seconds);
  }
  droppedReply(): void {
    this.dropped.inc();
  }
  retried(): void {
    this.retries.inc();
  }
}

/** An RPC server queue's series, bound once. */
export class RpcServerSeries implements RpcServerStats {
  private readonly outcomes = new Map<RpcServeOutcome, Count>();
  private readonly duration: Series;

  constructor(m: RegistryMetrics, connection: string, queue: string, counts: Count[]) {
    for (const o of RPC_SERVE_OUTCOMES) {
      const n = new Count(m.rpcServerRequests.labels(connection, queue, o));
      counts.push(n);
      this.outcomes.set(o, n);
    }
    this.duration = m.rpcServerDuration.series({ connection, queue });
  }

  served(outcome: RpcServeOutcome, seconds: number): void {
    this.outcomes.get(outcome)?.inc();
    if (outcome === "ok" || outcome === "error") this.duration.observe(seconds);
  }
}
