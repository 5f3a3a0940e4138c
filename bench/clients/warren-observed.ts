/**
 * warren's supervised client with metrics and tracing on, to measure what observability costs:
 * Prometheus metrics into a private prom-client Registry (scraped once at the end of each
 * phase, as a Prometheus would), and OpenTelemetry tracing through a real SDK tracer provider
 * (W3C trace context injected into every message, a producer span per publish and a consumer
 * span per delivery) whose spans go to a batch processor and an exporter that drops them.
 * Compared with "warren-client" in the same run (bench/run.ts prints the ratio).
 *
 * Tracing as a busy service would run it: parent-based sampling, 1% of new traces recorded
 * (WARREN_BENCH_SAMPLE=1 records every span), trace context in the sampled messages
 * (`propagate: "sampled"`; WARREN_BENCH_PROPAGATE=always puts it in every message).
 * WARREN_BENCH_OBSERVE=metrics|tracing measures one of the two alone; WARREN_BENCH_SDK=0 traces
 * through the API without an SDK (warren's instrumentation alone).
 */
import { propagation, type Tracer, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import { Registry } from "prom-client";
import { type ClientOptions, connect } from "../../src/index.js";
import type { OpenOptions } from "./types.js";
import { WarrenClientClient } from "./warren-client.js";

/** Counts spans and drops them (an exporter's work without its I/O). */
class DroppingExporter implements SpanExporter {
  exported = 0;
  export(spans: ReadableSpan[], done: (r: { code: number }) => void): void {
    this.exported += spans.length;
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export class WarrenObservedClient extends WarrenClientClient {
  override readonly name = "warren-observed";
  private registry = new Registry();
  private provider: BasicTracerProvider | undefined;

  override async open(o: OpenOptions): Promise<void> {
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const ratio = Number(process.env["WARREN_BENCH_SAMPLE"] ?? "0.01");
    this.provider = new BasicTracerProvider({
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
      spanProcessors: [new BatchSpanProcessor(new DroppingExporter(), { maxQueueSize: 65_536 })],
    });
    // WARREN_BENCH_SDK=0: the API's own no-op tracer (no SDK): what warren's instrumentation alone costs.
    const tracer: Tracer =
      process.env["WARREN_BENCH_SDK"] === "0"
        ? trace.getTracer("warren-bench")
        : this.provider.getTracer("warren-bench");
    const which = process.env["WARREN_BENCH_OBSERVE"] ?? "both";
    const opts: ClientOptions = { url: o.url };
    if (which !== "tracing") opts.metrics = { registry: this.registry };
    // Trace context in the sampled messages only (WARREN_BENCH_PROPAGATE=always: in every message).
    const propagate = process.env["WARREN_BENCH_PROPAGATE"] === "always" ? "always" : "sampled";
    if (which !== "metrics") opts.tracing = { tracer, propagate };
    if (o.frameMax !== undefined) opts.frameMax = o.frameMax;
    this.client = connect(opts);
    await this.client.ready();
  }

  override async publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number) {
    await super.publishConfirmed(queue, body, count, maxInFlight);
    await this.registry.metrics();
  }

  override async consume(queue: string, count: number, prefetch: number, bodySize: number) {
    await super.consume(queue, count, prefetch, bodySize);
    await this.registry.metrics();
  }

  override async close(): Promise<void> {
    await super.close();
    await this.provider?.shutdown();
  }
}
