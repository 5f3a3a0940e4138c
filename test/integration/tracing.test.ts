/**
 * OpenTelemetry traces (connect({ tracing })) against the real broker, with the SDK's in-memory
 * exporter: a producer span per publish ended at the confirm, a consumer span per delivery in the
 * producer's trace (W3C trace context in the headers), handler failures and final nacks as error
 * statuses, the trace context kept across a nack retry (scripted fake server) and across a killed
 * connection, the outbox, tracing off, a tracer of one's own, and no credentials in any span.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { context, propagation, SpanKind, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";
import { AsyncHooksContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  TraceAttributes as A,
  type ConsumedMessage,
  PublishNackedError,
  TraceEvents,
  UnroutableError,
  VERSION,
} from "../../src/index.js";
import { decodeBasicProperties } from "../../src/protocol/generated/spec.js";
import { FakeServer } from "../fake/server.js";
import { useAdmin } from "../support/admin.js";
import { rejection, within } from "../support/async.js";
import {
  AMQP_URL,
  addUser,
  amqpUrlWith,
  closeConnectionsNamed,
  deleteUser,
  uniqueName,
} from "../support/broker.js";
import { startBrokerProxy } from "../support/broker-proxy.js";
import { useClients } from "../support/clients.js";
import { drainQueue } from "../support/queue.js";
import { StateLog } from "../support/state-log.js";
import { nextTurn } from "../support/turn.js";
import { waitFor } from "../support/wait.js";

// ─── the SDK, registered globally for this file ─────────────────────────────

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
/** The application's own tracer (for parent spans and spans inside handlers). */
let appTracer: Tracer;

const BROKER = new URL(AMQP_URL);
const BROKER_HOST = BROKER.hostname;
const BROKER_PORT = Number(BROKER.port || 5672);

const admin = useAdmin();
const cleanups: (() => Promise<void>)[] = [];

beforeAll(() => {
  context.setGlobalContextManager(new AsyncHooksContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  appTracer = trace.getTracer("tracing-test-app");
});

afterEach(async () => {
  for (const f of cleanups.splice(0)) await f();
  exporter.reset();
});

// Registered after the cleanups, so it runs before them: clients close before their proxy or fake server.
const client = useClients("warren-tracing");

afterAll(async () => {
  trace.disable();
  propagation.disable();
  context.disable();
  await provider.shutdown();
});

// ─── helpers ────────────────────────────────────────────────────────────────

/** A queue of its own for the test (deleted after it). */
async function queue(args: Record<string, number | string> = {}): Promise<string> {
  const q = admin.queueName("tracing-q");
  await admin.pub.queueDeclare({ queue: q, arguments: args });
  return q;
}

const finished = (): ReadableSpan[] => exporter.getFinishedSpans();

function spansOf(kind: SpanKind, messageId: string): ReadableSpan[] {
  return finished().filter((s) => s.kind === kind && s.attributes[A.MESSAGE_ID] === messageId);
}

/** The one finished producer span of a message. */
function producerOf(messageId: string): ReadableSpan {
  const found = spansOf(SpanKind.PRODUCER, messageId);
  expect(found, `producer spans of ${messageId}`).toHaveLength(1);
  return found[0]!;
}

function traceparentOf(span: ReadableSpan): string {
  const { traceId, spanId } = span.spanContext();
  return `00-${traceId}-${spanId}-01`;
}

/** The consumer span is a child of the producer span (same trace) and links to it. */
function expectInProducersTrace(consumerSpan: ReadableSpan, producer: ReadableSpan): void {
  const p = producer.spanContext();
  expect(consumerSpan.spanContext().traceId).toBe(p.traceId);
  expect(consumerSpan.parentSpanContext?.spanId).toBe(p.spanId);
  expect(consumerSpan.parentSpanContext?.isRemote).toBe(true);
  expect(consumerSpan.links.map((l) => l.context.spanId)).toEqual([p.spanId]);
}

// ─── producer spans ─────────────────────────────────────────────────────────

describe("producer spans", () => {
  it("one per publish: a child of the active context, ended at the broker's confirm, with the messaging attributes", async () => {
    const q = await queue();
    const ex = uniqueName("tracing-ex");
    await admin.pub.exchangeDeclare({ exchange: ex, type: "direct", autoDelete: true });
    await admin.pub.queueBind({ queue: q, exchange: ex, routingKey: "order.created" });
    const { client: c } = client({ tracing: true });
    await c.ready();
    const pub = c.publisher();
    const headers = { "x-app": "shop" };
    const properties = { messageId: "m-1", correlationId: "conv-7", headers };

    const parent = appTracer.startSpan("http request");
    await context.with(trace.setSpan(context.active(), parent), async () => {
      const p = pub.publish({ exchange: ex, routingKey: "order.created", body: "héllo", properties });
      // Accepted and sent, not yet confirmed: the span is not ended.
      expect(spansOf(SpanKind.PRODUCER, "m-1")).toHaveLength(0);
      await p;
      expect(spansOf(SpanKind.PRODUCER, "m-1")).toHaveLength(1);
    });
    parent.end();

    const span = producerOf("m-1");
    expect(span.name).toBe(`publish ${ex}`);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.instrumentationScope).toMatchObject({ name: "warren", version: VERSION });
    expect(span.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(span.attributes).toEqual({
      "messaging.system": "rabbitmq",
      "messaging.operation.type": "send",
      "messaging.operation.name": "publish",
      "messaging.destination.name": ex,
      "messaging.rabbitmq.destination.routing_key": "order.created",
      "messaging.message.id": "m-1",
      "messaging.message.conversation_id": "conv-7",
      "messaging.message.body.size": Buffer.byteLength("héllo"),
      "server.address": BROKER_HOST,
      "server.port": BROKER_PORT,
    });

    // The default exchange is "amq.default"; no parent: a trace of its own.
    await pub.publish({
      exchange: "",
      routingKey: q,
      body: Buffer.alloc(3),
      properties: { messageId: "m-2" },
    });
    const second = producerOf("m-2");
    expect(second.name).toBe("publish amq.default");
    expect(second.attributes[A.DESTINATION]).toBe("amq.default");
    expect(second.attributes[A.BODY_SIZE]).toBe(3);
    expect(second.attributes[A.CONVERSATION_ID]).toBeUndefined();
    expect(second.parentSpanContext).toBeUndefined();
    expect(second.spanContext().traceId).not.toBe(span.spanContext().traceId);

    // The caller's objects are not touched; the message carries the trace context beside its headers.
    expect(properties.headers).toBe(headers);
    expect(headers).toEqual({ "x-app": "shop" });
    const got = await drainQueue(admin.conn, q);
    expect(got.map((m) => m.properties.messageId)).toEqual(["m-1", "m-2"]);
    expect(got[0]!.properties.headers).toEqual({ "x-app": "shop", traceparent: traceparentOf(span) });
    expect(got[1]!.properties.headers).toEqual({ traceparent: traceparentOf(second) });
  });

  it("headers of a forwarded message: its traceparent and tracestate give way to the new producer span's", async () => {
    const q = await queue();
    const { client: c } = client({ tracing: true });
    await c.ready();
    const forwarded = {
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      tracestate: "vendor=opaque",
      "x-origin": "upstream",
    };
    await c.publish("", q, "again", { messageId: "fw-1", headers: forwarded });
    const span = producerOf("fw-1");
    expect(span.parentSpanContext).toBeUndefined(); // the active context is the parent, not the old headers
    const [got] = await drainQueue(admin.conn, q);
    expect(got!.properties.headers).toEqual({ traceparent: traceparentOf(span), "x-origin": "upstream" });
    expect(forwarded.tracestate).toBe("vendor=opaque");
  });

  it("a tracer of one's own ({ tracer }) gets the spans, not the global provider", async () => {
    const q = await queue();
    const own = new InMemorySpanExporter();
    const ownProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] });
    cleanups.push(() => ownProvider.shutdown());
    const { client: c } = client({ tracing: { tracer: ownProvider.getTracer("mine") } });
    await c.ready();
    await c.publish("", q, "x", { messageId: "own-1" });
    expect(own.getFinishedSpans().map((s) => [s.name, s.attributes[A.MESSAGE_ID]])).toEqual([
      ["publish amq.default", "own-1"],
    ]);
    expect(finished()).toEqual([]);
  });

  it('propagate: "sampled" puts trace context only into messages whose span is recorded; "always" into every one', async () => {
    const q = await queue();
    const off = new BasicTracerProvider({ sampler: new AlwaysOffSampler() });
    cleanups.push(() => off.shutdown());
    const headerOf = async (messageId: string) => {
      const [m] = await drainQueue(admin.conn, q);
      expect(m?.properties.messageId).toBe(messageId);
      return m?.properties.headers?.["traceparent"];
    };
    const sampledOnly = client({ tracing: { tracer: off.getTracer("off"), propagate: "sampled" } }).client;
    await sampledOnly.publish("", q, "x", { messageId: "unsampled-sampled-only" });
    expect(await headerOf("unsampled-sampled-only")).toBeUndefined();
    const always = client({ tracing: { tracer: off.getTracer("off") } }).client;
    await always.publish("", q, "x", { messageId: "unsampled-always" });
    // Not sampled: the trace flags say so (00), so downstream parent-based samplers agree.
    expect(await headerOf("unsampled-always")).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    const recorded = client({ tracing: { propagate: "sampled" } }).client;
    await recorded.publish("", q, "x", { messageId: "sampled" });
    expect(await headerOf("sampled")).toBe(traceparentOf(producerOf("sampled")));
  });

  it("nacked after the retries: the producer span ends with an error status, the exception and an event per retry", async () => {
    // A queue that is always full and refuses publishes: the broker nacks every one.
    const q = await queue({ "x-max-length": 0, "x-overflow": "reject-publish" });
    const { client: c } = client({ tracing: true });
    await c.ready();
    const pub = c.publisher({
      renewAfterNacks: 0,
      nackRetry: { attempts: 3, withinMs: 10_000, initialDelayMs: 10, maxDelayMs: 20 },
    });
    const err = await rejection(
      pub.publish({ exchange: "", routingKey: q, body: "refused", properties: { messageId: "n-1" } }),
    );
    expect(err).toBeInstanceOf(PublishNackedError);
    expect((err as PublishNackedError).attempts).toBe(3);

    const span = producerOf("n-1");
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    expect(span.attributes[A.ERROR_TYPE]).toBe("PublishNackedError");
    const retries = span.events.filter((e) => e.name === TraceEvents.NACK_RETRY);
    expect(retries.map((e) => e.attributes?.[A.ATTEMPT])).toEqual([1, 2]);
    for (const r of retries) expect(r.attributes?.[A.DELAY_MS]).toBeGreaterThanOrEqual(5);
    const exception = span.events.filter((e) => e.name === "exception");
    expect(exception).toHaveLength(1);
    // The SDK names the exception by its code.
    expect(exception[0]!.attributes?.["exception.type"]).toBe((err as PublishNackedError).code);
    expect(exception[0]!.attributes?.["exception.message"]).toBe((err as Error).message);
  });

  it("unroutable (mandatory, returned): the producer span ends with an error status", async () => {
    const ex = uniqueName("tracing-nowhere");
    // Never bound, so autoDelete never removes it: deleted after the test.
    await admin.pub.exchangeDeclare({ exchange: ex, type: "direct" });
    cleanups.push(async () => {
      await admin.pub.exchangeDelete({ exchange: ex });
    });
    const { client: c } = client({ tracing: true });
    await c.ready();
    const err = await rejection(
      c.publish(ex, "no.binding", "lost", { messageId: "u-1" }, { mandatory: true }),
    );
    expect(err).toBeInstanceOf(UnroutableError);
    const span = producerOf("u-1");
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    expect(span.attributes[A.ERROR_TYPE]).toBe("UnroutableError");
  });

  it("a nack retry sends the same traceparent again (scripted fake server: nack, nack, ack)", async () => {
    const sent: { traceparent: unknown; body: string }[] = [];
    const fake = await FakeServer.start(async (peer) => {
      peer.answerDefaults();
      let seq = 0;
      let traceparent: unknown;
      peer.watch((f) => {
        if (f.method?.name === "confirm.select") seq = 0;
        else if (f.method?.name === "basic.publish") seq += 1;
        else if (f.type === 2) traceparent = decodeBasicProperties(f.payload, 12).headers?.["traceparent"];
        else if (f.type === 3) {
          sent.push({ traceparent, body: f.payload.toString() });
          const nack = sent.length < 3;
          peer.send(
            f.channel,
            nack
              ? { name: "basic.nack", args: { deliveryTag: seq, multiple: false, requeue: false } }
              : { name: "basic.ack", args: { deliveryTag: seq, multiple: false } },
          );
        }
      });
      await peer.handshake({ heartbeat: 0 });
    });
    cleanups.push(() => fake.close());
    const { client: c } = client({ url: `amqp://guest:guest@127.0.0.1:${fake.port}`, tracing: true });
    await c.ready();
    const pub = c.publisher({ renewAfterNacks: 0, nackRetry: { initialDelayMs: 10, maxDelayMs: 20 } });
    await pub.publish({ exchange: "", routingKey: "q", body: "again", properties: { messageId: "r-1" } });

    const span = producerOf("r-1");
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.events.filter((e) => e.name === TraceEvents.NACK_RETRY)).toHaveLength(2);
    expect(sent.map((s) => s.body)).toEqual(["again", "again", "again"]);
    expect(sent.map((s) => s.traceparent)).toEqual(Array(3).fill(traceparentOf(span)));
    expect(span.attributes[A.SERVER_PORT]).toBe(fake.port);
  });

  it("with an outbox: the span ends once the row is stored (noted), and the relayed message still carries it", async () => {
    const q = await queue();
    const dir = await mkdtemp(join(tmpdir(), "warren-tracing-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const { client: c } = client({ tracing: true });
    await c.ready();
    const pub = c.publisher({ outbox: { path: join(dir, "outbox.db") } });
    const received: ConsumedMessage[] = [];
    c.consume({ queue: q }, (m) => {
      received.push(m);
    });

    await pub.publish({ exchange: "", routingKey: q, body: "stored", properties: { messageId: "o-1" } });
    const span = producerOf("o-1");
    expect(span.attributes[A.OUTBOX_STORED]).toBe(true);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);

    await waitFor(() => spansOf(SpanKind.CONSUMER, "o-1").length === 1, "the consumer span of o-1");
    expect(received[0]!.properties.headers?.["traceparent"]).toBe(traceparentOf(span));
    expectInProducersTrace(spansOf(SpanKind.CONSUMER, "o-1")[0]!, span);
  });
});

// ─── consumer spans ─────────────────────────────────────────────────────────

describe("consumer spans", () => {
  it("one per delivery, in the producer's trace; the handler runs inside it; ended at the ack", async () => {
    const q = await queue();
    const { client: c } = client({ tracing: true });
    await c.ready();
    let activeInHandler: string | undefined;
    const received: ConsumedMessage[] = [];
    c.consume({ queue: q }, async (m) => {
      received.push(m);
      activeInHandler = trace.getActiveSpan()?.spanContext().spanId;
      await appTracer.startActiveSpan("charge card", async (s) => {
        await nextTurn();
        s.end();
      });
    });
    await c.publish("", q, "pay", { messageId: "c-1", correlationId: "conv-1" });
    await waitFor(() => spansOf(SpanKind.CONSUMER, "c-1").length === 1, "the consumer span of c-1");

    const producer = producerOf("c-1");
    const span = spansOf(SpanKind.CONSUMER, "c-1")[0]!;
    expect(span.name).toBe(`process ${q}`);
    expectInProducersTrace(span, producer);
    expect(received[0]!.properties.headers?.["traceparent"]).toBe(traceparentOf(producer));
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.attributes).toEqual({
      "messaging.system": "rabbitmq",
      "messaging.operation.type": "process",
      "messaging.operation.name": "consume",
      "messaging.destination.name": "amq.default",
      "messaging.consumer.group.name": q,
      "messaging.destination.subscription.name": q,
      "messaging.rabbitmq.destination.routing_key": q,
      "messaging.rabbitmq.message.delivery_tag": received[0]!.fields.deliveryTag,
      "messaging.message.id": "c-1",
      "messaging.message.conversation_id": "conv-1",
      "messaging.message.body.size": 3,
      "server.address": BROKER_HOST,
      "server.port": BROKER_PORT,
      "warren.delivery.outcome": "ack",
    });
    // The handler ran in the consumer span's context: the user's span is its child.
    expect(activeInHandler).toBe(span.spanContext().spanId);
    const user = finished().filter((s) => s.name === "charge card");
    expect(user).toHaveLength(1);
    expect(user[0]!.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
    expect(user[0]!.spanContext().traceId).toBe(producer.spanContext().traceId);
    // Ended after the handler's own work.
    expect(finished().indexOf(user[0]!)).toBeLessThan(finished().indexOf(span));
  });

  it("a failing handler: error status, the exception, and the outcome (nack, then reject on the redelivery)", async () => {
    const q = await queue();
    const { client: c } = client({ tracing: true });
    await c.ready();
    const consumer = c.consume({ queue: q }, () => {
      throw new TypeError("cannot handle this");
    });
    const errors: unknown[] = [];
    consumer.on("error", (e) => errors.push(e));
    await c.publish("", q, "bad", { messageId: "f-1" });
    await waitFor(() => spansOf(SpanKind.CONSUMER, "f-1").length === 2, "two consumer spans of f-1");

    const producer = producerOf("f-1");
    const [first, second] = spansOf(SpanKind.CONSUMER, "f-1");
    expect([first!.attributes[A.OUTCOME], second!.attributes[A.OUTCOME]]).toEqual(["nack", "reject"]);
    for (const s of [first!, second!]) {
      expectInProducersTrace(s, producer);
      expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: "cannot handle this" });
      expect(s.attributes[A.ERROR_TYPE]).toBe("TypeError");
      const ex = s.events.filter((e) => e.name === "exception");
      expect(ex.map((e) => e.attributes?.["exception.message"])).toEqual(["cannot handle this"]);
    }
    expect(errors).toHaveLength(2);
  });

  it("a rejected promise from the handler ends the span with an error too", async () => {
    const q = await queue();
    const { client: c } = client({ tracing: true });
    await c.ready();
    const consumer = c.consume({ queue: q }, async () => {
      await nextTurn();
      throw new Error("later");
    });
    consumer.on("error", () => undefined);
    await c.publish("", q, "bad", { messageId: "f-2" });
    await waitFor(() => spansOf(SpanKind.CONSUMER, "f-2").length >= 1, "the consumer span of f-2");
    const span = spansOf(SpanKind.CONSUMER, "f-2")[0]!;
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes[A.OUTCOME]).toBe("nack");
  });

  it("a message without trace context: the consumer span starts a trace of its own", async () => {
    const q = await queue();
    const { client: c } = client({ tracing: true });
    await c.ready();
    c.consume({ queue: q }, () => undefined);
    await admin.pub.publish("", q, "plain", { messageId: "p-1" });
    await waitFor(() => spansOf(SpanKind.CONSUMER, "p-1").length === 1, "the consumer span of p-1");
    const span = spansOf(SpanKind.CONSUMER, "p-1")[0]!;
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.links).toEqual([]);
    expect(span.attributes[A.OUTCOME]).toBe("ack");
  });
});

// ─── a connection killed with a publish in flight ───────────────────────────

describe("recovery", () => {
  it("publishes in flight when the connection is killed are re-published with the same traceparent; the consumer spans stay in the producer's trace", async () => {
    const q = await queue();
    const proxy = await startBrokerProxy();
    cleanups.push(() => proxy.close());
    const { client: producerClient, name } = client({
      url: proxy.url,
      tracing: true,
      reconnect: { initial: 50, max: 200 },
    });
    const { client: consumerClient } = client({ tracing: true });
    const states = new StateLog(producerClient);
    await Promise.all([producerClient.ready(), consumerClient.ready()]);
    const received: ConsumedMessage[] = [];
    consumerClient.consume({ queue: q }, (m) => {
      received.push(m);
    });
    const pub = producerClient.publisher();
    await pub.publish({ exchange: "", routingKey: q, body: "warm-up", properties: { messageId: "warm-up" } });

    // Sent on the old connection, never confirmed there: the broker does not see them.
    proxy.stall();
    const ids = ["k-0", "k-1", "k-2", "k-3", "k-4"];
    const promises = ids.map((id) =>
      pub.publish({ exchange: "", routingKey: q, body: id, properties: { messageId: id } }),
    );
    expect(pub.pending).toBe(5);
    const mark = states.changes.length;
    expect(await closeConnectionsNamed(`${name}:publish`, "killed by the tracing test")).toBe(1);
    await within(Promise.all(promises), 30_000, "the publishes in flight at the kill");
    // Recovered: the producer's client left "running" after the kill and came back to it.
    await states.next("running", mark);
    expect(states.statesSince(mark)[0]).not.toBe("running");

    await waitFor(
      () => ids.every((id) => spansOf(SpanKind.CONSUMER, id).length > 0),
      "consumer spans of the re-published messages",
    );
    for (const id of ids) {
      const producer = producerOf(id);
      expect(producer.status.code).toBe(SpanStatusCode.UNSET);
      const republished = producer.events.filter((e) => e.name === TraceEvents.REPUBLISH);
      expect(republished.length, `republish events of ${id}`).toBeGreaterThanOrEqual(1);
      for (const s of spansOf(SpanKind.CONSUMER, id)) expectInProducersTrace(s, producer);
      for (const m of received.filter((r) => r.properties.messageId === id))
        expect(m.properties.headers?.["traceparent"]).toBe(traceparentOf(producer));
    }
  });
});

// ─── tracing off, and credentials ───────────────────────────────────────────

describe("tracing off", () => {
  it("no spans and no traceparent header, even inside an active span", async () => {
    const q = await queue();
    for (const tracing of [undefined, false] as const) {
      const { client: c } = client(tracing === undefined ? {} : { tracing });
      await c.ready();
      const received: ConsumedMessage[] = [];
      c.consume({ queue: q }, (m) => {
        received.push(m);
      });
      const parent = appTracer.startSpan("request");
      await context.with(trace.setSpan(context.active(), parent), () =>
        c.publish("", q, "quiet", { messageId: `off-${String(tracing)}`, headers: { a: 1 } }),
      );
      parent.end();
      await waitFor(() => received.length === 1, "the delivery");
      expect(received[0]!.properties.headers).toEqual({ a: 1 });
      await c.close();
    }
    // Only the application's own spans.
    expect(finished().map((s) => s.name)).toEqual(["request", "request"]);
  });
});

describe("credentials", () => {
  it("never appear in a span: name, attributes, events or links", async () => {
    const user = uniqueName("tracing-user");
    const password = uniqueName("s3cret");
    await addUser(user, password);
    cleanups.push(() => deleteUser(user));
    const q = await queue();
    const url = amqpUrlWith({ user, password });
    const { client: c } = client({ url, tracing: true });
    await c.ready();
    const consumer = c.consume({ queue: q }, (m) => {
      if (m.fields.redelivered) return;
      throw new Error(`failing once for ${m.properties.messageId}`);
    });
    consumer.on("error", () => undefined);
    await c.publish("", q, "secret stuff", { messageId: "s-1" });
    await waitFor(() => spansOf(SpanKind.CONSUMER, "s-1").length === 2, "two consumer spans of s-1");

    const spans = finished().filter((s) => s.instrumentationScope.name === "warren");
    expect(spans.length).toBe(3);
    const dump = JSON.stringify(
      spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, links: s.links })),
    );
    expect(dump).not.toContain(password);
    expect(dump).not.toContain(user);
    expect(dump).not.toContain("amqp://");
    for (const s of spans) {
      expect(s.attributes[A.SERVER_ADDRESS]).toBe(BROKER_HOST);
      expect(s.attributes[A.SERVER_PORT]).toBe(BROKER_PORT);
    }
  });
});
