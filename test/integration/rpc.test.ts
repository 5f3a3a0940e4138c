/**
 * Request/reply over direct reply-to against the real broker: round trip, many concurrent calls,
 * timeouts (and the late reply dropped), unroutable requests, error replies, requests without
 * replyTo, metrics and spans, and recovery: the server's connection killed mid-call (the request
 * is redelivered and answered; the server answers later calls), the client's connection killed
 * mid-call (the call fails fast with a recoverable error, or succeeds after recovery with
 * `retry`; later calls work again).
 *
 * Connections are killed with `rabbitmqctl close_connection`, found by their unique names.
 */
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncHooksContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChannelClosedByBroker,
  type Client,
  ClientClosedError,
  type ConsumedMessage,
  RpcCallTimeoutError,
  RpcConnectionLostError,
  RpcRemoteError,
  type RpcServer,
  UnroutableError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, rejection, sleep } from "../support/async.js";
import { canUseRabbitmqctl, closeConnectionsNamed, uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

const admin = useAdmin();
const client = useClients("rpc", { reconnect: { initial: 10, max: 100 } });

/** A server on a fresh queue it declares (deleted after the test). */
async function serve(
  c: Client,
  handler: (req: ConsumedMessage) => unknown,
  options: { prefetch?: number; concurrency?: number } = {},
): Promise<{ queue: string; server: RpcServer }> {
  const queue = admin.queueName("rpc-q");
  const server = c.rpcServer({ queue, declare: true, ...options }, handler as never);
  await server.ready();
  return { queue, server };
}

describe("rpc", () => {
  it("round trip: body, properties, correlation", async () => {
    const { client: srv } = client();
    const { client: cli } = client();
    const seen: ConsumedMessage[] = [];
    const { queue } = await serve(srv, (req) => {
      seen.push(req);
      return {
        body: req.body.toString().toUpperCase(),
        properties: {
          contentType: "text/plain",
          headers: { "x-echo": req.properties.headers?.["x-in"] ?? "" },
        },
      };
    });
    const rpc = cli.rpcClient();
    const a = await rpc.call({
      exchange: "",
      routingKey: queue,
      body: "hello",
      properties: { headers: { "x-in": "first" }, type: "greeting" },
      timeoutMs: 5000,
    });
    const b = await rpc.call({ routingKey: queue, body: "again", timeoutMs: 5000 });
    expect(a.body.toString()).toBe("HELLO");
    expect(a.properties.contentType).toBe("text/plain");
    expect(a.properties.headers?.["x-echo"]).toBe("first");
    expect(b.body.toString()).toBe("AGAIN");
    expect(seen).toHaveLength(2);
    expect(seen[0]!.properties.type).toBe("greeting");
    expect(seen[0]!.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to\./);
    expect(a.properties.correlationId).toBe(seen[0]!.properties.correlationId);
    expect(b.properties.correlationId).toBe(seen[1]!.properties.correlationId);
    expect(a.properties.correlationId).not.toBe(b.properties.correlationId);
    expect(rpc.inFlight).toBe(0);
  });

  it("many concurrent calls are all matched to their replies", async () => {
    const { client: srv } = client();
    const { client: cli } = client();
    const { queue } = await serve(
      srv,
      async (req) => {
        // Out of order on purpose: a delay of 0-6 ms lets later requests be answered first.
        await sleep(Number(req.body.toString()) % 7);
        return `reply-${req.body.toString()}`;
      },
      { prefetch: 100, concurrency: 50 },
    );
    const rpc = cli.rpcClient({ maxInFlight: 64 });
    const n = 1000;
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        rpc.call({ routingKey: queue, body: String(i), timeoutMs: 20_000 }),
      ),
    );
    expect(replies.map((r) => r.body.toString())).toEqual(Array.from({ length: n }, (_, i) => `reply-${i}`));
    expect(rpc.inFlight).toBe(0);
    expect(rpc.queued).toBe(0);
  });

  it("at most maxInFlight calls are outstanding; the rest wait their turn", async () => {
    const { client: srv } = client();
    const { client: cli } = client();
    const gate = deferred();
    let received = 0;
    const { queue } = await serve(srv, async (req) => {
      received++;
      await gate.promise;
      return req.body;
    });
    const rpc = cli.rpcClient({ maxInFlight: 2 });
    const calls = Array.from({ length: 5 }, (_, i) =>
      rpc.call({ routingKey: queue, body: `c${i}`, timeoutMs: 20_000 }),
    );
    await waitFor(() => received === 2, "two requests at the server");
    expect(rpc.inFlight).toBe(2);
    expect(rpc.queued).toBe(3);
    gate.resolve();
    const replies = await Promise.all(calls);
    expect(replies.map((r) => r.body.toString())).toEqual(["c0", "c1", "c2", "c3", "c4"]);
    expect(received).toBe(5);
  });

  it("a call nobody answers in time rejects with RpcCallTimeoutError; the late reply is dropped", async () => {
    const { client: srv } = client();
    const registry = new Registry();
    const { client: cli, name: cliName } = client({ metrics: { registry } });
    const gate = deferred();
    let received = 0;
    const { queue } = await serve(srv, async () => {
      received++;
      await gate.promise;
      return "late";
    });
    const rpc = cli.rpcClient();
    const dropped: string[] = [];
    rpc.on("droppedReply", (m) => dropped.push(m.body.toString()));
    // Connected and consuming replies first: the 300 ms are the call's alone, not the connect's.
    await cli.ready();
    await waitFor(() => rpc.ready, "the reply consumer");
    const t0 = performance.now();
    const err = await rejection(rpc.call({ routingKey: queue, body: "x", timeoutMs: 300 }));
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(RpcCallTimeoutError);
    expect((err as RpcCallTimeoutError).code).toBe("RPC_CALL_TIMEOUT");
    expect((err as RpcCallTimeoutError).recoverable).toBe(true);
    // Not before the timeout (timer granularity aside); after it by no more than a loaded machine's delay.
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3000);
    await waitFor(() => received === 1, "the request at the server");
    gate.resolve();
    await waitFor(() => dropped.length === 1, "the late reply");
    expect(dropped).toEqual(["late"]);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(
      new RegExp(`warren_rpc_client_calls_total\\{connection="${cliName}",outcome="timeout"\\} 1`),
    );
    expect(metrics).toMatch(
      new RegExp(`warren_rpc_client_replies_dropped_total\\{connection="${cliName}"\\} 1`),
    );
  });

  it("a request nobody consumed expires in its queue when its call times out", async () => {
    const { client: cli } = client();
    // Expired messages are dead-lettered to `expired`: proof that the request was in the queue.
    const queue = admin.queueName("rpc-idle");
    const expired = admin.queueName("rpc-expired");
    await admin.pub.queueDeclare({ queue: expired });
    await admin.pub.queueDeclare({
      queue,
      arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": expired },
    });
    const rpc = cli.rpcClient();
    // Connected and consuming replies first, so the request is sent well within its 200 ms.
    await cli.ready();
    await waitFor(() => rpc.ready, "the reply consumer");
    const err = await rejection(rpc.call({ routingKey: queue, body: "stale", timeoutMs: 200 }));
    expect(err).toBeInstanceOf(RpcCallTimeoutError);
    const depth = async (q: string) =>
      (await admin.pub.queueDeclare({ queue: q, passive: true })).messageCount;
    await until(async () => (await depth(expired)) === 1, "the expired request dead-lettered", 10_000);
    const dead = await admin.pub.basicGet({ queue: expired, noAck: true });
    expect(dead?.body.toString()).toBe("stale");
    expect(dead?.properties.headers?.["x-first-death-reason"]).toBe("expired");
    expect(dead?.properties.headers?.["x-first-death-queue"]).toBe(queue);
    expect(await depth(queue)).toBe(0);
  });

  it("an unroutable request fails at once with UnroutableError", async () => {
    const { client: cli } = client();
    await cli.ready();
    const rpc = cli.rpcClient();
    const t0 = performance.now();
    const err = await rejection(
      rpc.call({ routingKey: uniqueName("nobody-home"), body: "x", timeoutMs: 20_000 }),
    );
    expect(err).toBeInstanceOf(UnroutableError);
    expect((err as UnroutableError).replyCode).toBe(312);
    // "At once": on the broker's return, not after the call's 20 s timeout (a bound with room for a loaded machine).
    expect(performance.now() - t0).toBeLessThan(5000);
    // The channel is still fine.
    expect(rpc.ready).toBe(true);
    const { client: srv } = client();
    const { queue } = await serve(srv, () => "ok");
    expect((await rpc.call({ routingKey: queue, body: "", timeoutMs: 5000 })).body.toString()).toBe("ok");
  });

  it("a publish to a missing exchange fails with the broker's error; other calls carry on", async () => {
    const { client: cli } = client();
    const { client: srv } = client();
    const { queue } = await serve(srv, () => "ok");
    const rpc = cli.rpcClient();
    const missing = uniqueName("no-exchange");
    const err = await rejection(rpc.call({ exchange: missing, routingKey: "x", body: "", timeoutMs: 5000 }));
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect(err).toMatchObject({
      code: "CHANNEL_CLOSED_BY_BROKER",
      replyCode: 404,
      methodName: "basic.publish",
    });
    expect((err as ChannelClosedByBroker).replyText).toContain(missing);
    expect((await rpc.call({ routingKey: queue, body: "", timeoutMs: 5000 })).body.toString()).toBe("ok");
  });

  it("a handler error comes back as RpcRemoteError with its name and message", async () => {
    const { client: srv } = client();
    const { client: cli } = client();
    const { queue, server } = await serve(srv, (req) => {
      if (req.body.toString() === "warren")
        throw new UnroutableError({ replyCode: 312, replyText: "NO_ROUTE", exchange: "e", routingKey: "k" });
      throw new TypeError("no price for that");
    });
    const handlerErrors: unknown[] = [];
    server.on("handlerError", (e) => handlerErrors.push(e));
    const rpc = cli.rpcClient();
    const err = await rejection(rpc.call({ routingKey: queue, body: "x", timeoutMs: 5000 }));
    expect(err).toBeInstanceOf(RpcRemoteError);
    const r = err as RpcRemoteError;
    expect(r.remoteName).toBe("TypeError");
    expect(r.remoteMessage).toBe("no price for that");
    expect(r.remoteCode).toBeUndefined();
    expect(r.code).toBe("RPC_REMOTE_ERROR");
    expect(r.recoverable).toBe(false);
    const coded = (await rejection(
      rpc.call({ routingKey: queue, body: "warren", timeoutMs: 5000 }),
    )) as RpcRemoteError;
    expect(coded).toBeInstanceOf(RpcRemoteError);
    expect(coded.remoteName).toBe("UnroutableError");
    expect(coded.remoteCode).toBe("UNROUTABLE");
    expect(handlerErrors).toHaveLength(2);
    // The requests were acked: nothing is left in the queue, nothing redelivered.
    expect(server.served).toBe(2);
  });

  it("a request without replyTo is acked and dropped (dropped event)", async () => {
    const registry = new Registry();
    const { client: srvObserved, name: srvObservedName } = client({ metrics: { registry } });
    let handled = 0;
    const { queue, server } = await serve(srvObserved, () => {
      handled++;
      return "never sent";
    });
    const dropped: ConsumedMessage[] = [];
    server.on("dropped", ({ request }) => dropped.push(request));
    const { client: pub } = client();
    await pub.publish("", queue, "fire and forget");
    await waitFor(() => dropped.length === 1, "the dropped request");
    expect(dropped[0]!.body.toString()).toBe("fire and forget");
    expect(handled).toBe(0);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(
      new RegExp(
        `warren_rpc_server_requests_total\\{connection="${srvObservedName}",queue="${queue}",outcome="no_reply_to"\\} 1`,
      ),
    );
  });

  it("calls made after close() reject with ClientClosedError", async () => {
    const { client: cli } = client();
    const rpc = cli.rpcClient();
    await rpc.close();
    expect(await rejection(rpc.call({ routingKey: "x", body: "", timeoutMs: 1000 }))).toBeInstanceOf(
      ClientClosedError,
    );
  });

  it("metrics: calls by outcome, latency, server requests", async () => {
    const registry = new Registry();
    const { client: srv, name: srvName } = client({ metrics: { registry } });
    const { client: cli, name: cliName } = client({ metrics: { registry } });
    const { queue } = await serve(srv, (req) => {
      if (req.body.toString() === "fail") throw new Error("nope");
      return "ok";
    });
    const rpc = cli.rpcClient();
    for (let i = 0; i < 3; i++) await rpc.call({ routingKey: queue, body: "", timeoutMs: 5000 });
    expect(await rejection(rpc.call({ routingKey: queue, body: "fail", timeoutMs: 5000 }))).toBeInstanceOf(
      RpcRemoteError,
    );
    const m = await registry.metrics();
    const c = cliName;
    expect(m).toMatch(new RegExp(`warren_rpc_client_calls_total\\{connection="${c}",outcome="ok"\\} 3`));
    expect(m).toMatch(
      new RegExp(`warren_rpc_client_calls_total\\{connection="${c}",outcome="remote_error"\\} 1`),
    );
    expect(m).toMatch(new RegExp(`warren_rpc_client_duration_seconds_count\\{connection="${c}"\\} 4`));
    expect(m).toMatch(
      new RegExp(
        `warren_rpc_server_requests_total\\{connection="${srvName}",queue="${queue}",outcome="ok"\\} 3`,
      ),
    );
    expect(m).toMatch(
      new RegExp(
        `warren_rpc_server_requests_total\\{connection="${srvName}",queue="${queue}",outcome="error"\\} 1`,
      ),
    );
    expect(m).toMatch(
      new RegExp(`warren_rpc_server_duration_seconds_count\\{connection="${srvName}",queue="${queue}"\\} 4`),
    );
  });
});

describe("rpc traces", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncHooksContextManager();

  beforeAll(() => {
    contextManager.enable();
    context.setGlobalContextManager(contextManager);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  });

  afterAll(() => {
    context.disable();
    propagation.disable();
  });

  it("a CLIENT span per call and a SERVER span per request, in one trace", async () => {
    const tracer = provider.getTracer("rpc-test");
    const { client: srv } = client({ tracing: { tracer } });
    const { client: cli } = client({ tracing: { tracer } });
    let inner: string | undefined;
    const { queue } = await serve(srv, () => {
      inner = trace.getActiveSpan()?.spanContext().traceId;
      return "traced";
    });
    const rpc = cli.rpcClient();
    await rpc.call({ routingKey: queue, body: "", timeoutMs: 5000 });
    await waitFor(
      () => exporter.getFinishedSpans().some((s) => s.name === `serve ${queue}`),
      "the server span",
    );
    const spans = exporter.getFinishedSpans();
    const call = spans.find((s) => s.name === `call ${queue}`)!;
    const served = spans.find((s) => s.name === `serve ${queue}`)!;
    expect(call.kind).toBe(SpanKind.CLIENT);
    expect(served.kind).toBe(SpanKind.SERVER);
    expect(served.spanContext().traceId).toBe(call.spanContext().traceId);
    expect(inner).toBe(call.spanContext().traceId);
  });
});

const usable = await canUseRabbitmqctl();

describe("rpc through recoveries", () => {
  it.skipIf(!usable)(
    "the server's connection killed mid-call: the request is redelivered and answered; later calls too",
    async () => {
      const { client: srv, name: srvName } = client();
      const { client: cli } = client();
      let invocations = 0;
      const first = deferred();
      const hang = deferred();
      const { queue, server } = await serve(srv, async (req) => {
        invocations++;
        if (invocations === 1) {
          first.resolve();
          await hang.promise; // the first handling never finishes before its channel dies
        }
        return `answered ${req.body.toString()}`;
      });
      const rpc = cli.rpcClient();
      const states = new StateLog(server);
      const pending = rpc.call({ routingKey: queue, body: "a", timeoutMs: 20_000 });
      await first.promise;
      const mark = states.changes.length;
      expect(await closeConnectionsNamed(`${srvName}:consume`, "rpc test: server restart")).toBe(1);
      const reply = await pending;
      expect(reply.body.toString()).toBe("answered a");
      expect(invocations).toBe(2);
      // Resubscribed: after the kill the server's consumer left "consuming", and came back to it.
      await states.next("consuming", mark);
      expect(states.changes[mark]).toMatchObject({ from: "consuming" });
      expect(states.statesSince(mark)[0]).not.toBe("consuming");
      hang.resolve();
      const later = await rpc.call({ routingKey: queue, body: "b", timeoutMs: 20_000 });
      expect(later.body.toString()).toBe("answered b");
    },
  );

  it.skipIf(!usable)(
    "the client's connection killed mid-call: fails fast (recoverable); with retry succeeds after recovery",
    async () => {
      const { client: srv } = client();
      const { client: cli, name: cliName } = client();
      const arrived: string[] = [];
      const gate = deferred();
      const { queue } = await serve(srv, async (req) => {
        const body = req.body.toString();
        arrived.push(body);
        // The first copy of each request waits until the caller's connection was killed.
        if (arrived.filter((b) => b === body).length === 1) await gate.promise;
        return `answered ${body}`;
      });
      const rpc = cli.rpcClient();
      const states = new StateLog(cli);
      // Its rejection is awaited below, after the kill; the time it settled is kept.
      const plain = rejection(rpc.call({ routingKey: queue, body: "plain", timeoutMs: 20_000 })).then(
        (error) => ({
          error,
          at: performance.now(),
        }),
      );
      const retried = rpc.call({ routingKey: queue, body: "retried", timeoutMs: 20_000, retry: true });
      await waitFor(() => arrived.length === 2, "both requests at the server");
      const mark = states.changes.length;
      expect(await closeConnectionsNamed(`${cliName}:publish`, "rpc test: client connection")).toBe(1);
      const { error: err, at: failedAt } = await plain;
      expect(err).toBeInstanceOf(RpcConnectionLostError);
      expect((err as RpcConnectionLostError).recoverable).toBe(true);
      expect((err as RpcConnectionLostError).code).toBe("RPC_CONNECTION_LOST");
      // Fast: when the client noticed the loss, not at the call's 20 s timeout. (Measured from the
      // client's first state change after the kill, not from the rabbitmqctl call, which alone can
      // take seconds on a loaded machine.)
      await waitFor(() => states.changes.length > mark, "the client's state change after the kill");
      expect(failedAt - states.changes[mark]!.at).toBeLessThan(5000);
      // The retried call was sent again on the new connection and answered there.
      const reply = await retried;
      expect(reply.body.toString()).toBe("answered retried");
      expect(arrived.filter((b) => b === "retried")).toHaveLength(2);
      gate.resolve();
      // Later calls work again (the reply consumer was set up on the new channel).
      const later = await rpc.call({ routingKey: queue, body: "later", timeoutMs: 20_000 });
      expect(later.body.toString()).toBe("answered later");
    },
  );
});
