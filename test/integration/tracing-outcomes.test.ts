/**
 * The consumer span outcomes nothing was sent to the broker for, against the real broker with
 * the SDK's in-memory exporter (`warren.delivery.outcome`):
 * - `auto_ack`: a noAck consumer (the broker forgot the message when it sent it), whether the
 *   handler succeeds (status unset) or fails (error status, no policy: nothing to requeue);
 * - `abandoned`: the delivery's channel went away while its handler ran — a cancel() whose
 *   drainTimeout ran out, or the connection killed — so the handler's end settles nothing; the
 *   span ends when the handler does, and the broker redelivers the message (an `ack` span then).
 */
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  TraceAttributes as A,
  ConnectionClosedByBroker,
  type ConsumedMessage,
  type Consumer,
  TimeoutError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, within } from "../support/async.js";
import { canUseRabbitmqctl, closeConnectionsNamed } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { StateLog } from "../support/state-log.js";
import { waitFor } from "../support/wait.js";

/** One test kills the client's connection (rabbitmqctl close_connection). */
const canKill = await canUseRabbitmqctl();

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("tracing-outcomes-test");

// Registered first, so its afterEach (deleting the queues) runs after the clients are closed.
const admin = useAdmin();
const client = useClients("warren-tracing-outcomes", { tracing: { tracer } });

afterEach(() => exporter.reset());
afterAll(() => provider.shutdown());

async function queueWith(prefix: string, ...ids: string[]): Promise<string> {
  const queue = admin.queueName(prefix);
  await admin.pub.queueDeclare({ queue });
  for (const id of ids) await admin.pub.publish("", queue, id, { messageId: id });
  return queue;
}

async function depth(queue: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue, passive: true })).messageCount;
}

/** The finished consumer spans of a message, in the order they ended. */
function consumerSpans(messageId: string): ReadableSpan[] {
  return exporter
    .getFinishedSpans()
    .filter((s) => s.kind === SpanKind.CONSUMER && s.attributes[A.MESSAGE_ID] === messageId);
}

function outcomes(messageId: string): unknown[] {
  return consumerSpans(messageId).map((s) => s.attributes[A.OUTCOME]);
}

function waitForSpans(messageId: string, n: number): Promise<void> {
  return waitFor(() => consumerSpans(messageId).length >= n, `${n} consumer span(s) of ${messageId}`);
}

/** Every `error` event of a consumer (a handler failed). */
function handlerErrors(consumer: Consumer): unknown[] {
  const errors: unknown[] = [];
  consumer.on("error", (e) => errors.push(e));
  return errors;
}

describe("auto_ack: a noAck consumer", () => {
  it("handlers that succeed: outcome auto_ack, status unset; the queue is empty", async () => {
    const { client: c } = client();
    const queue = await queueWith("outcome-auto", "a1", "a2", "a3");
    const consumer = c.consume({ queue, noAck: true }, () => undefined);
    for (const id of ["a1", "a2", "a3"]) await waitForSpans(id, 1);

    for (const id of ["a1", "a2", "a3"]) {
      const [span] = consumerSpans(id);
      expect(consumerSpans(id)).toHaveLength(1);
      expect(span?.name).toBe(`process ${queue}`);
      expect(span?.attributes[A.OUTCOME]).toBe("auto_ack");
      expect(span?.status.code).toBe(SpanStatusCode.UNSET);
      expect(span?.attributes[A.ERROR_TYPE]).toBeUndefined();
    }
    expect(consumer.stats).toMatchObject({ delivered: 3, failed: 0, requeued: 0, inFlight: 0 });
    expect(await depth(queue)).toBe(0);
  });

  it("a handler that fails: outcome auto_ack with an error status; nothing requeued", async () => {
    const { client: c } = client();
    const queue = await queueWith("outcome-auto-fail", "f1");
    const boom = new TypeError("handler failed on purpose");
    const consumer = c.consume({ queue, noAck: true }, () => {
      throw boom;
    });
    const errors = handlerErrors(consumer);
    await waitForSpans("f1", 1);

    const [span] = consumerSpans("f1");
    expect(consumerSpans("f1")).toHaveLength(1);
    expect(span?.attributes[A.OUTCOME]).toBe("auto_ack");
    expect(span?.status).toEqual({ code: SpanStatusCode.ERROR, message: "handler failed on purpose" });
    expect(span?.attributes[A.ERROR_TYPE]).toBe("TypeError");
    expect(span?.events.map((e) => e.name)).toEqual(["exception"]);
    expect(errors).toEqual([boom]);
    expect(consumer.stats).toMatchObject({ delivered: 1, failed: 1, requeued: 0, inFlight: 0 });
    // The broker forgot it when it sent it: nothing to requeue.
    expect(await depth(queue)).toBe(0);
  });
});

describe("abandoned: the channel went away while the handler ran", () => {
  /**
   * A handler whose first call is held until released and then returns (or throws its signal's
   * reason, the drain's TimeoutError); later calls (the redelivery) return at once.
   */
  function heldOnce(rethrow: boolean) {
    const started = deferred<ConsumedMessage>();
    const release = deferred();
    let calls = 0;
    const redelivered: boolean[] = [];
    const handler = async (m: ConsumedMessage): Promise<void> => {
      calls += 1;
      redelivered.push(m.fields.redelivered);
      if (calls > 1) return;
      const signal = m.signal; // asked for: a drain that gives up aborts it
      started.resolve(m);
      await release.promise;
      if (rethrow && signal.aborted) throw signal.reason;
    };
    return { handler, started: started.promise, release: () => release.resolve(), redelivered };
  }

  it.each([
    { rethrow: false, status: SpanStatusCode.UNSET, what: "the handler then returns: status unset" },
    {
      rethrow: true,
      status: SpanStatusCode.ERROR,
      what: "the handler then throws the drain's TimeoutError: error status",
    },
  ])("cancel({ drainTimeout: 0 }) mid-handler: $what", async ({ rethrow, status }) => {
    const { client: c } = client();
    const queue = await queueWith("outcome-drain", "d1");
    const held = heldOnce(rethrow);
    const consumer = c.consume({ queue }, held.handler);
    const errors = handlerErrors(consumer);
    const message = await within(held.started, 10_000, "the delivery");

    await within(consumer.cancel({ drainTimeout: 0 }), 10_000, "cancel()");
    // The drain gave up: the channel is closed, the handler still runs, its span is still open.
    const spansWhileRunning = consumerSpans("d1").length;
    const aborted = message.signal.aborted;
    held.release();
    await waitForSpans("d1", 1);

    expect(spansWhileRunning).toBe(0);
    expect(aborted).toBe(true);
    const [span] = consumerSpans("d1");
    expect(span?.attributes[A.OUTCOME]).toBe("abandoned");
    expect(span?.status.code).toBe(status);
    if (rethrow) {
      expect(span?.attributes[A.ERROR_TYPE]).toBe("TimeoutError");
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(TimeoutError);
    } else {
      expect(span?.attributes[A.ERROR_TYPE]).toBeUndefined();
      expect(errors).toEqual([]);
    }
    expect(consumer.stats).toMatchObject({ delivered: 1, acked: 0, requeued: 0, inFlight: 0 });

    // Not lost: the next consumer gets it again, flagged redelivered, and acks it.
    const next = c.consume({ queue }, held.handler);
    await waitForSpans("d1", 2);
    expect(outcomes("d1")).toEqual(["abandoned", "ack"]);
    expect(held.redelivered).toEqual([false, true]);
    await next.cancel();
    expect(await depth(queue)).toBe(0);
  });

  it.skipIf(!canKill)(
    "the connection killed mid-handler (needs rabbitmqctl): abandoned, then redelivered after the recovery and acked",
    async () => {
      const { client: c, name } = client();
      const log = new StateLog(c);
      const queue = await queueWith("outcome-kill", "k1");
      const held = heldOnce(false);
      const consumer = c.consume({ queue }, held.handler);
      const clog = new StateLog(consumer);
      const errors = handlerErrors(consumer);
      await within(held.started, 10_000, "the delivery");

      const mark = log.changes.length;
      const cmark = clog.changes.length;
      const closed = await closeConnectionsNamed(`${name}:consume`, "tracing outcomes: killed mid-handler");
      const recovering = await log.next("recovering", mark);
      // The connection (and the consumer's channel with it) is gone; the held handler still runs.
      // The recovery may already have redelivered the message to a second, unheld handler (its
      // span ends "ack"), but the held delivery's span must not end before its handler returns.
      const abandonedWhileRunning = outcomes("k1").filter((o) => o === "abandoned").length;
      held.release();
      await log.next("running", mark);
      await clog.next("consuming", cmark);
      await waitForSpans("k1", 2);

      expect(closed).toBeGreaterThan(0);
      expect(recovering.error).toBeInstanceOf(ConnectionClosedByBroker);
      expect(abandonedWhileRunning).toBe(0);
      expect([...outcomes("k1")].sort()).toEqual(["abandoned", "ack"]);
      for (const span of consumerSpans("k1")) expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(held.redelivered).toEqual([false, true]);
      expect(errors).toEqual([]);
      expect(consumer.stats).toMatchObject({ delivered: 2, acked: 1, requeued: 0, inFlight: 0 });
      await consumer.cancel();
      expect(await depth(queue)).toBe(0);
    },
  );
});
