/**
 * A consumer's drain against the real broker: cancel() (and client.close()) wait up to
 * `drainTimeout` for running handlers and their acks, then close the channel. A handler that
 * finishes in time is acked (nothing left, nothing redelivered); one that outlives the drain has
 * its `signal` aborted with a TimeoutError naming drainTimeout, its late result acks nothing, and
 * the broker redelivers its message (flagged redelivered). Which drainTimeout applies: the
 * client's closeTimeout unless consume() or cancel() gives one.
 */
import { describe, expect, it } from "vitest";
import { type ConsumedMessage, type Consumer, TimeoutError } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, within } from "../support/async.js";
import { errorsOf, useClients } from "../support/clients.js";
import { Inbox } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

// Registered first, so its afterEach (deleting the queues) runs after the clients are closed.
const admin = useAdmin();
const client = useClients("warren-drain");

/**
 * errorsOf() is typed for the client's `error` event ((e: Error)); a consumer's passes
 * (error: unknown, message). Same events, so the cast is safe.
 */
type ErrorSource = Parameters<typeof errorsOf>[0];

/** Timing bounds: a drain that gives up never ends before its timeout (a timer's 1 ms granularity
 * and libuv's cached clock aside); the upper bound only catches a drain that waited for the handler. */
const EARLY_MS = 2;
const LATE_MS = 3_000;

/** A queue of the test's own (deleted after it) holding `bodies`. */
async function queueWith(prefix: string, ...bodies: string[]): Promise<string> {
  const queue = admin.queueName(prefix);
  await admin.pub.queueDeclare({ queue });
  for (const body of bodies) await admin.pub.publish("", queue, body);
  return queue;
}

/** Ready messages in the queue, as the broker counts them. */
async function depth(queue: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue, passive: true })).messageCount;
}

/**
 * A handler that runs until released: `started` resolves with its message, `aborted` with its
 * signal's reason (if the drain gives up on it), `finished` once it returned.
 */
function heldHandler() {
  const started = deferred<ConsumedMessage>();
  const aborted = deferred<unknown>();
  const release = deferred();
  const finished = deferred();
  let done = false;
  const handler = async (m: ConsumedMessage): Promise<void> => {
    m.signal.addEventListener("abort", () => aborted.resolve(m.signal.reason), { once: true });
    started.resolve(m);
    await release.promise;
    done = true;
    finished.resolve();
  };
  return {
    handler,
    started: started.promise,
    aborted: aborted.promise,
    release: () => release.resolve(),
    finished: finished.promise,
    get done() {
      return done;
    },
  };
}

/** Calls cancel() and resolves with how long it took (ms). */
async function timedCancel(consumer: Consumer, options?: { drainTimeout?: number }): Promise<number> {
  const t0 = performance.now();
  await consumer.cancel(options);
  return performance.now() - t0;
}

describe("consumer drain", () => {
  it("cancel() waits for a handler that finishes within drainTimeout; its ack reaches the broker", async () => {
    const { client: c } = client();
    const queue = await queueWith("drain-in-time", "quick");
    const held = heldHandler();
    const consumer = c.consume({ queue, drainTimeout: 10_000 }, held.handler);
    const errors = errorsOf(consumer as ErrorSource);
    const message = await within(held.started, 10_000, "the delivery");

    let cancelResolved = false;
    const cancelled = consumer.cancel().then(() => {
      cancelResolved = true;
    });
    // The drain has sent basic.cancel (the tag is gone) and now waits for the running handler.
    await waitFor(() => consumer.state === "draining" && consumer.tag === undefined, "the drain to wait");
    const resolvedBeforeRelease = cancelResolved;
    held.release();
    await within(cancelled, 10_000, "cancel()");

    expect(resolvedBeforeRelease).toBe(false);
    expect(held.done).toBe(true);
    expect(message.signal.aborted).toBe(false);
    expect(message.settled).toBe(true);
    expect(consumer.state).toBe("cancelled");
    expect(consumer.stats).toMatchObject({ delivered: 1, acked: 1, requeued: 0, failed: 0, inFlight: 0 });
    expect(errors).toEqual([]);
    // The channel is closed: had the ack not reached the broker, the message would be ready again.
    const ok = await admin.pub.queueDeclare({ queue, passive: true });
    expect(ok.messageCount).toBe(0);
    expect(ok.consumerCount).toBe(0);
  });

  it("a handler that outlives drainTimeout: cancel() returns after it, the signal says why, the broker redelivers", async () => {
    const DRAIN = 300;
    const { client: c } = client();
    const queue = await queueWith("drain-late", "slow");
    const held = heldHandler();
    const consumer = c.consume({ queue, drainTimeout: DRAIN }, held.handler);
    const errors = errorsOf(consumer as ErrorSource);
    const first = await within(held.started, 10_000, "the delivery");
    expect(first.fields.redelivered).toBe(false);

    const elapsed = await within(timedCancel(consumer), DRAIN + 10_000, "cancel()");
    const stillRunning = !held.done;
    const reason = await within(held.aborted, 1_000, "the handler's signal");
    console.info(`drain gave up after ${elapsed.toFixed(1)} ms (drainTimeout ${DRAIN} ms)`);

    expect(elapsed).toBeGreaterThanOrEqual(DRAIN - EARLY_MS);
    expect(elapsed).toBeLessThan(DRAIN + LATE_MS);
    expect(stillRunning).toBe(true);
    expect(consumer.state).toBe("cancelled");
    // The give-up reaches the handler through its signal: a TimeoutError naming the queue and drainTimeout.
    expect(first.signal.aborted).toBe(true);
    expect(reason).toBeInstanceOf(TimeoutError);
    expect((reason as TimeoutError).code).toBe("TIMEOUT");
    expect((reason as TimeoutError).message).toContain(`consumer of queue "${queue}"`);
    expect((reason as TimeoutError).message).toContain(`drainTimeout (${DRAIN} ms)`);
    expect((reason as TimeoutError).message).toContain("the broker redelivers");
    // It is no handler failure (no policy applies): no `error` event.
    expect(errors).toEqual([]);

    // Not lost: redelivered to the next consumer, flagged.
    const inbox = new Inbox();
    const second = c.consume({ queue }, inbox.handler);
    await inbox.got("slow");
    expect(inbox.messages).toEqual([expect.objectContaining({ body: "slow", redelivered: true })]);

    // The first handler's late success acks nothing (its channel is gone; a stale tag would be a 406).
    held.release();
    await within(held.finished, 1_000, "the held handler");
    expect(first.settled).toBe(true);
    expect(consumer.stats).toMatchObject({ delivered: 1, acked: 0, requeued: 0, failed: 0, inFlight: 0 });
    await second.cancel();
    expect(second.stats).toMatchObject({ delivered: 1, acked: 1, inFlight: 0 });
    expect(await depth(queue)).toBe(0);
  });

  const cases = [
    {
      what: "closeTimeout by default",
      closeTimeout: 400,
      consume: undefined,
      cancel: undefined,
      expected: 400,
    },
    {
      what: "consume()'s over closeTimeout",
      closeTimeout: 20_000,
      consume: 250,
      cancel: undefined,
      expected: 250,
    },
    {
      what: "cancel()'s over both",
      closeTimeout: 20_000,
      consume: 20_000,
      cancel: 250,
      expected: 250,
    },
  ] as const;

  it.each(cases)("which drainTimeout: $what", async ({ closeTimeout, consume, cancel, expected }) => {
    const { client: c } = client({ closeTimeout });
    const queue = await queueWith("drain-which", "held");
    const held = heldHandler();
    const consumer = c.consume(
      { queue, ...(consume !== undefined ? { drainTimeout: consume } : {}) },
      held.handler,
    );
    await within(held.started, 10_000, "the delivery");

    const elapsed = await within(
      timedCancel(consumer, cancel !== undefined ? { drainTimeout: cancel } : undefined),
      expected + 10_000,
      "cancel()",
    );
    const reason = await within(held.aborted, 1_000, "the handler's signal");
    held.release();
    console.info(`${expected} ms drain: cancel() took ${elapsed.toFixed(1)} ms`);

    expect(reason).toBeInstanceOf(TimeoutError);
    expect((reason as TimeoutError).message).toContain(`drainTimeout (${expected} ms)`);
    expect(elapsed).toBeGreaterThanOrEqual(expected - EARLY_MS);
    expect(elapsed).toBeLessThan(expected + LATE_MS);
  });

  it("client.close() drains its consumers within closeTimeout; the message is back in the queue", async () => {
    const closeTimeout = 400;
    const { client: c } = client({ closeTimeout });
    const queue = await queueWith("drain-close", "held");
    const held = heldHandler();
    const consumer = c.consume({ queue }, held.handler);
    await within(held.started, 10_000, "the delivery");

    const t0 = performance.now();
    await within(c.close(), closeTimeout + 10_000, "client.close()");
    const elapsed = performance.now() - t0;
    const reason = await within(held.aborted, 1_000, "the handler's signal");
    held.release();

    expect(consumer.state).toBe("cancelled");
    expect(reason).toBeInstanceOf(TimeoutError);
    expect((reason as TimeoutError).message).toContain(`drainTimeout (${closeTimeout} ms)`);
    expect(elapsed).toBeGreaterThanOrEqual(closeTimeout - EARLY_MS);
    expect(elapsed).toBeLessThan(closeTimeout + LATE_MS);
    // The connection is closed: the broker puts the unacked message back (its queue process learns
    // of the dead channel on its own schedule, hence the polling).
    await until(async () => (await depth(queue)) === 1, "the message back in the queue");
  });
});
