/**
 * The connection, channel and consumer machines, without a broker and without sleeping:
 * first with xstate's pure `initialTransition` / `transition` (the next snapshot and the
 * actions it would run, nothing executed), then as real actors whose side effects are
 * fakes this file controls (`.provide({ actors })`) and whose time is a SimulatedClock.
 */

import { describe, expect, it } from "vitest";
import {
  type AnyEventObject,
  createActor,
  type EventObject,
  fromCallback,
  fromPromise,
  initialTransition,
  SimulatedClock,
  transition,
} from "xstate";
import { type ChannelMachineInput, channelMachine } from "../../machines/channel.js";
import {
  type ConnectInput,
  type ConnectionEvent,
  type ConnectionMachineInput,
  connectionMachine,
  type LifecycleError,
} from "../../machines/connection.js";
import { CONSUMER_BACKOFF, type ConsumerMachineInput, consumerMachine } from "../../machines/consumer.js";
import {
  AuthenticationError,
  ChannelClosedByBroker,
  ChannelLimitError,
  ConnectionClosedError,
  HeartbeatTimeoutError,
  QueueNotFoundError,
  RestartIntensityError,
  SocketError,
  TlsError,
} from "../../src/errors.js";
import { nextTurn } from "../support/turn.js";

// ─── harness ────────────────────────────────────────────────────────────────

const recoverable = (msg = "socket reset") => new SocketError(msg);
const fatal = (msg = "bad credentials") => new AuthenticationError(msg);
const channelError = (replyCode = 404) =>
  new ChannelClosedByBroker({ replyCode, replyText: "NOT_FOUND", classId: 50, methodId: 10 });

/**
 * Fake side-effect actors. Promise actors stay pending until the test settles them;
 * callback actors hand their `sendBack` to the test. Starts, inputs and stops are logged.
 */
class Fakes {
  readonly started: string[] = [];
  readonly stopped: string[] = [];
  readonly inputs: Record<string, unknown[]> = {};
  private readonly pending = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();
  private readonly senders = new Map<string, (e: AnyEventObject) => void>();

  promise(src: string) {
    return fromPromise<void>(({ input, signal }) => {
      this.log(src, input);
      return new Promise<void>((resolve, reject) => {
        this.pending.set(src, { resolve, reject });
        signal.addEventListener("abort", () => {
          this.pending.delete(src);
          this.stopped.push(src);
        });
      });
    });
  }

  callback<E extends EventObject, I = unknown>(src: string) {
    return fromCallback<E, I>(({ input, sendBack }) => {
      this.log(src, input);
      this.senders.set(src, sendBack as (e: AnyEventObject) => void);
      return () => {
        this.senders.delete(src);
        this.stopped.push(src);
      };
    });
  }

  /** Is the actor `src` running now? */
  running(src: string): boolean {
    return this.pending.has(src) || this.senders.has(src);
  }

  count(src: string): number {
    return this.started.filter((s) => s === src).length;
  }

  lastInput(src: string): unknown {
    return this.inputs[src]?.at(-1);
  }

  async resolve(src: string): Promise<void> {
    this.take(src).resolve();
    await nextTurn(); // settled promises deliver their done/error events
  }

  async reject(src: string, error: unknown): Promise<void> {
    this.take(src).reject(error);
    await nextTurn(); // settled promises deliver their done/error events
  }

  /** What the callback actor `src` would send to its parent. */
  send(src: string, event: AnyEventObject): void {
    const s = this.senders.get(src);
    if (!s) throw new Error(`${src} is not running`);
    s(event);
  }

  private take(src: string) {
    const p = this.pending.get(src);
    if (!p) throw new Error(`${src} is not pending`);
    this.pending.delete(src);
    return p;
  }

  private log(src: string, input: unknown): void {
    this.started.push(src);
    (this.inputs[src] ??= []).push(input);
  }
}

/** The `xstate.raise` of an `after` delay among pure transition actions, if any. */
function scheduledDelay(actions: readonly { type: string; params?: unknown }[]): number | undefined {
  const raise = actions.find((a) => a.type === "xstate.raise");
  return (raise?.params as { delay?: number } | undefined)?.delay;
}

function spawned(actions: readonly { type: string; params?: unknown }[]): { src: unknown; input: unknown }[] {
  return actions
    .filter((a) => a.type === "xstate.spawnChild")
    .map((a) => {
      const p = a.params as { src: unknown; input: unknown };
      return { src: p.src, input: p.input };
    });
}

/** xstate's events for an invoked actor's completion, as the machine receives them. */
const done = <E>(invokeId: string) => ({ type: `xstate.done.actor.${invokeId}` }) as unknown as E;
const failedWith = <E>(invokeId: string, error: unknown) =>
  ({ type: `xstate.error.actor.${invokeId}`, error }) as unknown as E;
const afterDelay = <E>(stateId: string) => ({ type: `xstate.after.backoff.${stateId}` }) as unknown as E;

// ─── connection ─────────────────────────────────────────────────────────────

/** Not the defaults, so that the expected delays below do not depend on them. */
const backoff = { initial: 100, max: 10_000, multiplier: 2 };

function connection(input: Partial<ConnectionMachineInput> = {}) {
  const clock = new SimulatedClock();
  const fakes = new Fakes();
  const machine = connectionMachine.provide({
    actors: {
      connect: fakes.callback<ConnectionEvent, ConnectInput>("connect"),
      restore: fakes.promise("restore"),
      watch: fakes.callback<ConnectionEvent>("watch"),
      shutdown: fakes.promise("shutdown"),
    },
  });
  const actor = createActor(machine, {
    clock,
    input: { hostCount: 2, backoff, now: () => clock.now(), random: () => 0.5, ...input },
  });
  actor.start();
  const h = {
    actor,
    clock,
    fakes,
    value: () => actor.getSnapshot().value,
    context: () => actor.getSnapshot().context,
    /** The connect actor opens the socket and completes the handshake. */
    connect() {
      fakes.send("connect", { type: "SOCKET_OPEN" });
      fakes.send("connect", { type: "CONNECTED" });
    },
    /** From idle, recovering (after its delay) or opening, to open.running. */
    async run() {
      if (h.value() === "idle") actor.send({ type: "START" });
      leave(h, "recovering");
      leave(h, "degraded");
      h.connect();
      await fakes.resolve("restore");
      expect(h.value()).toEqual({ open: "running" });
    },
    /** The live connection closes (the watch actor reports it). */
    lose(error: LifecycleError = recoverable()) {
      fakes.send("watch", { type: "LOST", error });
    },
  };
  return h;
}

type ConnectionHarness = ReturnType<typeof connection>;

/** Advances the simulated clock, a ms at a time, until the actor has left `state`. */
function leave(h: { clock: SimulatedClock; value: () => unknown }, state: string): void {
  for (let i = 0; i < 60_000 && h.value() === state; i++) h.clock.increment(1);
  expect(h.value()).not.toBe(state);
}

/** Advances the clock to one ms before `delay` (still `from`), then to `delay` (now left). */
function expectBackoff(h: { clock: SimulatedClock; value: () => unknown }, delay: number, from: unknown) {
  h.clock.increment(delay - 1);
  expect(h.value()).toEqual(from);
  h.clock.increment(1);
  expect(h.value()).not.toEqual(from);
}

describe("connection machine, pure transitions", () => {
  const input = { hostCount: 2, backoff, now: () => 0, random: () => 0.5 };
  const restoring = "0.connection.open.restoring";

  it("walks idle → opening → handshaking → open.restoring → open.running, starting the right actors", () => {
    const [s0, a0] = initialTransition(connectionMachine, input);
    expect(s0.value).toBe("idle");
    expect(a0).toEqual([]);

    const [s1, a1] = transition(connectionMachine, s0, { type: "START" });
    expect(s1.value).toEqual({ opening: "connecting" });
    expect(spawned(a1)).toEqual([{ src: "connect", input: { hostIndex: 0, attempt: 0 } }]);

    const [s2, a2] = transition(connectionMachine, s1, { type: "SOCKET_OPEN" });
    expect(s2.value).toEqual({ opening: "handshaking" });
    expect(a2).toEqual([]); // the same connect actor carries on with the handshake

    const [s3, a3] = transition(connectionMachine, s2, { type: "CONNECTED" });
    expect(s3.value).toEqual({ open: "restoring" });
    expect(spawned(a3).map((s) => s.src)).toEqual(["watch", "restore"]);
    expect(a3.some((a) => (a.type as string) === "xstate.stopChild")).toBe(true);

    const [s4] = transition(connectionMachine, s3, done(restoring));
    expect(s4.value).toEqual({ open: "running" });

    const [s5] = transition(connectionMachine, s4, { type: "BLOCKED", reason: "low on memory" });
    expect(s5.value).toEqual({ open: "blocked" });
    expect(s5.context.blockedReason).toBe("low on memory");
    const [s6] = transition(connectionMachine, s5, { type: "UNBLOCKED" });
    expect(s6.value).toEqual({ open: "running" });
    expect(s6.context.blockedReason).toBeUndefined();
  });

  it("schedules the jittered backoff: LOST and CONNECT_FAILED move to the next host, the delay grows", () => {
    let [s] = initialTransition(connectionMachine, input);
    [s] = transition(connectionMachine, s, { type: "START" });
    [s] = transition(connectionMachine, s, { type: "CONNECTED" });
    [s] = transition(connectionMachine, s, done(restoring));

    let actions: { type: string; params?: unknown }[];
    [s, actions] = transition(connectionMachine, s, { type: "LOST", error: recoverable() });
    expect(s.value).toBe("recovering");
    // The host whose connection died rests: the other one is next.
    expect(s.context).toMatchObject({ hostIndex: 1, attempt: 0, restarts: [0], cooldownUntil: [10_000, 0] });
    expect(scheduledDelay(actions)).toBe(50); // floor(0.5 × 100)

    [s, actions] = transition(connectionMachine, s, afterDelay("connection.recovering"));
    expect(s.value).toEqual({ opening: "connecting" });
    expect(spawned(actions)).toEqual([{ src: "connect", input: { hostIndex: 1, attempt: 0 } }]);

    const delays: number[] = [];
    const hosts: number[] = [];
    for (let i = 1; i <= 5; i++) {
      [s, actions] = transition(connectionMachine, s, { type: "CONNECT_FAILED", error: recoverable() });
      expect(s.value).toBe("recovering");
      expect(s.context.attempt).toBe(i);
      delays.push(scheduledDelay(actions)!);
      [s, actions] = transition(connectionMachine, s, afterDelay("connection.recovering"));
      const next = spawned(actions)[0]?.input as ConnectInput | undefined;
      hosts.push(next?.hostIndex ?? -1);
    }
    expect(delays).toEqual([50, 100, 200, 400, 800]);
    // Both resting (the clock stands still here): the one resting for less time goes first.
    expect(hosts).toEqual([0, 1, 0, 1, 0]);
  });

  it("ignores events that mean nothing in the current state", () => {
    const [idle] = initialTransition(connectionMachine, input);
    for (const e of [
      { type: "CONNECTED" },
      { type: "LOST", error: recoverable() },
      { type: "BLOCKED", reason: "x" },
      { type: "ESCALATE", error: recoverable() },
    ] as ConnectionEvent[]) {
      expect(transition(connectionMachine, idle, e)[0].value).toBe("idle");
    }
    const [opening1] = transition(connectionMachine, idle, { type: "START" });
    expect(transition(connectionMachine, opening1, { type: "LOST", error: recoverable() })[0].value).toEqual({
      opening: "connecting",
    });
    expect(transition(connectionMachine, opening1, { type: "START" })[0].value).toEqual({
      opening: "connecting",
    });
  });

  it("a non-recoverable CONNECT_FAILED goes to failed and keeps the error", () => {
    let [s] = initialTransition(connectionMachine, input);
    [s] = transition(connectionMachine, s, { type: "START" });
    const error = new TlsError("self-signed certificate");
    [s] = transition(connectionMachine, s, { type: "CONNECT_FAILED", error });
    expect(s.value).toBe("failed");
    expect(s.context.error).toBe(error);
    const [closed] = transition(connectionMachine, s, { type: "CLOSE" });
    expect(closed.value).toBe("closed");
    expect(closed.status).toBe("done");
  });
});

describe("connection machine, as an actor with fakes and a simulated clock", () => {
  it("START → connecting → handshaking → restoring → running, with the watch alive while open", async () => {
    const h = connection();
    expect(h.value()).toBe("idle");
    h.actor.send({ type: "START" });
    expect(h.value()).toEqual({ opening: "connecting" });
    expect(h.fakes.lastInput("connect")).toEqual({ hostIndex: 0, attempt: 0 });
    h.fakes.send("connect", { type: "SOCKET_OPEN" });
    expect(h.value()).toEqual({ opening: "handshaking" });
    h.fakes.send("connect", { type: "CONNECTED" });
    expect(h.value()).toEqual({ open: "restoring" });
    expect(h.fakes.running("connect")).toBe(false);
    expect(h.fakes.running("watch")).toBe(true);
    expect(h.fakes.running("restore")).toBe(true);
    await h.fakes.resolve("restore");
    expect(h.value()).toEqual({ open: "running" });
    expect(h.fakes.running("watch")).toBe(true);
    expect(h.context()).toMatchObject({ attempt: 0, error: undefined, restarts: [] });
  });

  it("BLOCKED ⇄ UNBLOCKED while running", async () => {
    const h = connection();
    await h.run();
    h.fakes.send("watch", { type: "BLOCKED", reason: "disk alarm" });
    expect(h.value()).toEqual({ open: "blocked" });
    expect(h.context().blockedReason).toBe("disk alarm");
    h.fakes.send("watch", { type: "UNBLOCKED" });
    expect(h.value()).toEqual({ open: "running" });
    expect(h.context().blockedReason).toBeUndefined();
    h.fakes.send("watch", { type: "BLOCKED", reason: "memory alarm" });
    expect(h.value()).toEqual({ open: "blocked" });
  });

  it("BLOCKED during restoring ends in blocked once the restore is done; UNBLOCKED meanwhile cancels it", async () => {
    const h = connection();
    h.actor.send({ type: "START" });
    h.connect();
    h.fakes.send("watch", { type: "BLOCKED", reason: "memory alarm" });
    expect(h.value()).toEqual({ open: "restoring" });
    await h.fakes.resolve("restore");
    expect(h.value()).toEqual({ open: "blocked" });
    expect(h.context().blockedReason).toBe("memory alarm");

    const h2 = connection();
    h2.actor.send({ type: "START" });
    h2.connect();
    h2.fakes.send("watch", { type: "BLOCKED", reason: "memory alarm" });
    h2.fakes.send("watch", { type: "UNBLOCKED" });
    await h2.fakes.resolve("restore");
    expect(h2.value()).toEqual({ open: "running" });
  });

  it("LOST → recovering → (backoff on the clock) → opening on the next host that is not resting", async () => {
    const h = connection({ hostCount: 3 });
    h.actor.send({ type: "START" });
    h.fakes.send("connect", { type: "CONNECT_FAILED", error: recoverable("refused") });
    expectBackoff(h, 50, "recovering");
    expect(h.fakes.lastInput("connect")).toEqual({ hostIndex: 1, attempt: 1 });
    h.connect();
    await h.fakes.resolve("restore");
    expect(h.context().attempt).toBe(0);

    const lost = new HeartbeatTimeoutError("missed heartbeats");
    h.lose(lost);
    expect(h.value()).toBe("recovering");
    expect(h.fakes.running("watch")).toBe(false);
    expect(h.context().error).toBe(lost);
    expect(h.context().restarts).toEqual([50]);
    expectBackoff(h, 50, "recovering");
    expect(h.value()).toEqual({ opening: "connecting" });
    // Host 0 refused and host 1 died: both rest, host 2 is next.
    expect(h.fakes.lastInput("connect")).toEqual({ hostIndex: 2, attempt: 0 });
  });

  it("a host that rested its cool-down is tried again; a single host is always retried", async () => {
    const h = connection({ hostCount: 3, hostCooldown: 1000 });
    await h.run();
    const hosts: number[] = [];
    for (let i = 0; i < 3; i++) {
      h.lose();
      leave(h, "recovering");
      hosts.push((h.fakes.lastInput("connect") as ConnectInput).hostIndex);
      h.connect();
      await h.fakes.resolve("restore");
    }
    expect(hosts).toEqual([1, 2, 0]); // host 0 died first: it rests least
    h.clock.increment(2000); // every cool-down over
    h.lose();
    leave(h, "recovering");
    expect((h.fakes.lastInput("connect") as ConnectInput).hostIndex).toBe(1);

    const one = connection({ hostCount: 1 });
    await one.run();
    one.lose();
    leave(one, "recovering");
    expect(one.fakes.lastInput("connect")).toEqual({ hostIndex: 0, attempt: 0 });
  });

  it("CONNECT_FAILED rotates the host, counts the attempt and grows the delay", async () => {
    const h = connection({ hostCount: 3 });
    h.actor.send({ type: "START" });
    const delays = [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000];
    for (const [i, delay] of delays.entries()) {
      h.fakes.send("connect", { type: "CONNECT_FAILED", error: recoverable() });
      expect(h.value()).toBe("recovering");
      expect(h.context().attempt).toBe(i + 1);
      expectBackoff(h, delay, "recovering");
      expect(h.value()).toEqual({ opening: "connecting" });
      expect(h.fakes.lastInput("connect")).toEqual({ hostIndex: (i + 1) % 3, attempt: i + 1 });
    }
    // Connecting again resets the attempt count.
    await h.run();
    expect(h.context().attempt).toBe(0);
  });

  it("a CONNECT_FAILED during the handshake counts the same as one before the socket opened", () => {
    const h = connection();
    h.actor.send({ type: "START" });
    h.fakes.send("connect", { type: "SOCKET_OPEN" });
    h.fakes.send("connect", { type: "CONNECT_FAILED", error: recoverable("handshake timed out") });
    expect(h.value()).toBe("recovering");
    expect(h.context()).toMatchObject({ attempt: 1, hostIndex: 1 });
  });

  it("a non-recoverable error on CONNECT_FAILED or LOST → failed, and nothing is retried", async () => {
    const h = connection();
    h.actor.send({ type: "START" });
    const auth = fatal();
    h.fakes.send("connect", { type: "CONNECT_FAILED", error: auth });
    expect(h.value()).toBe("failed");
    expect(h.context().error).toBe(auth);
    h.clock.increment(60_000);
    expect(h.value()).toBe("failed");
    expect(h.fakes.count("connect")).toBe(1);

    const h2 = connection();
    await h2.run();
    const gone = Object.assign(new Error("vhost deleted"), { recoverable: false });
    h2.lose(gone);
    expect(h2.value()).toBe("failed");
    expect(h2.context().error).toBe(gone);
    expect(h2.fakes.running("watch")).toBe(false);
    h2.clock.increment(60_000);
    expect(h2.fakes.count("connect")).toBe(1);
  });

  it("errors without a recoverable flag are taken as recoverable", async () => {
    const h = connection();
    await h.run();
    h.lose(new Error("ECONNRESET"));
    expect(h.value()).toBe("recovering");
  });

  it("restart intensity: maxRestarts LOSTs within the window recover, one more → degraded (escalated backoff), never failed", async () => {
    const h = connection({ intensity: { maxRestarts: 3, withinMs: 120_000 } });
    await h.run();
    for (let i = 0; i < 3; i++) {
      h.lose();
      expect(h.value()).toBe("recovering");
      expect(h.context().degraded).toBe(false);
      await h.run();
    }
    const last = recoverable("the last straw");
    h.lose(last);
    expect(h.value()).toBe("degraded");
    expect(h.context().degraded).toBe(true);
    expect(h.context().level).toBe(1);
    // Only the error that caused it.
    expect(h.context().error).toBe(last);
    // Level 1: the ceiling is the plain backoff's largest (10 s here); random 0.5 → 3/4 of it.
    expectBackoff(h, 7_500, "degraded");
    expect(h.value()).toEqual({ opening: "connecting" });
    expect(h.context().error).toBeUndefined();
    h.connect();
    await h.fakes.resolve("restore");
    // Lost again at once: still over the intensity, one level up, twice the ceiling.
    h.lose();
    expect(h.value()).toBe("degraded");
    expect(h.context().level).toBe(2);
    expectBackoff(h, 15_000, "degraded");
    h.connect();
    await h.fakes.resolve("restore");
    h.lose();
    expect(h.context().level).toBe(3);
    // Capped at escalation.maxBackoff (30 s).
    expectBackoff(h, 22_500, "degraded");
    h.connect();
    await h.fakes.resolve("restore");
    h.lose();
    expect(h.context().level).toBe(4);
    expectBackoff(h, 22_500, "degraded");
    expect(h.value()).not.toBe("failed");
  });

  it("degraded resets once the connection stayed up for escalation.resetAfterMs", async () => {
    const h = connection({
      intensity: { maxRestarts: 1, withinMs: 60_000 },
      escalation: { maxBackoff: 30_000, resetAfterMs: 5_000 },
    });
    await h.run();
    h.lose();
    await h.run();
    h.lose();
    expect(h.value()).toBe("degraded");
    await h.run();
    expect(h.context().degraded).toBe(true);
    h.clock.increment(4_999);
    expect(h.context().degraded).toBe(true);
    h.clock.increment(1);
    expect(h.context().degraded).toBe(false);
    expect(h.context().level).toBe(0);
    expect(h.context().troubles).toBe(0);
    expect(h.value()).toEqual({ open: "running" });
  });

  it("a loss while degraded but under the intensity keeps the level; a failed attempt while degraded waits in degraded", async () => {
    const h = connection({
      intensity: { maxRestarts: 1, withinMs: 10_000 },
      escalation: { maxBackoff: 30_000, resetAfterMs: 60_000 },
    });
    await h.run();
    h.lose();
    await h.run();
    h.lose();
    expect(h.context().level).toBe(1);
    leave(h, "degraded");
    h.actor.send({ type: "CONNECT_FAILED", error: recoverable("refused") });
    expect(h.value()).toBe("degraded");
    expect(h.context().level).toBe(1);
    await h.run();
    h.clock.increment(20_000); // the earlier restarts left the window, still not healthy (60 s)
    h.lose();
    expect(h.value()).toBe("degraded");
    expect(h.context().level).toBe(1);
  });

  it("giveUpAfter.attempts: failed with RestartIntensityError once that many failures pass without staying up", async () => {
    const h = connection({ giveUpAfter: { attempts: 3 } });
    h.actor.send({ type: "START" });
    h.actor.send({ type: "CONNECT_FAILED", error: recoverable("refused 1") });
    leave(h, "recovering");
    h.connect();
    await h.fakes.resolve("restore");
    h.lose(recoverable("lost 2"));
    await h.run();
    const last = recoverable("lost 3");
    h.lose(last);
    expect(h.value()).toBe("failed");
    const error = h.context().error;
    expect(error).toBeInstanceOf(RestartIntensityError);
    expect(error?.recoverable).toBe(false);
    expect(error?.message).toMatch(
      /gave up, as giveUpAfter asks \(3 attempts\): 3 failed attempts and restarts in \d+ ms.*last: lost 3/,
    );
    expect(error?.cause).toBe(last);
  });

  it("giveUpAfter.ms: failed at the first failure that long after the trouble began", async () => {
    const h = connection({ giveUpAfter: { ms: 10_000 } });
    h.actor.send({ type: "START" });
    for (let i = 0; i < 100 && h.value() !== "failed"; i++) {
      expect(h.value()).toEqual({ opening: "connecting" });
      h.actor.send({ type: "CONNECT_FAILED", error: recoverable("refused") });
      if (h.value() === "recovering") leave(h, "recovering");
    }
    expect(h.value()).toBe("failed");
    expect(h.clock.now()).toBeGreaterThanOrEqual(10_000);
    expect(h.clock.now()).toBeLessThan(10_000 + 10_000);
    expect(h.context().error).toBeInstanceOf(RestartIntensityError);
  });

  it("failedHost names the host that failed, hostIndex the next one; the error is cleared when the next attempt starts", async () => {
    const h = connection({ hostCount: 3 });
    h.actor.send({ type: "START" });
    expect(h.context().hostIndex).toBe(0);
    const refused = recoverable("refused by 0");
    h.actor.send({ type: "CONNECT_FAILED", error: refused });
    expect(h.value()).toBe("recovering");
    expect(h.context().failedHost).toBe(0);
    expect(h.context().hostIndex).toBe(1);
    expect(h.context().error).toBe(refused);
    leave(h, "recovering");
    expect(h.context().error).toBeUndefined();
  });

  it("restarts that have left the window no longer count", async () => {
    const h = connection({ intensity: { maxRestarts: 2, withinMs: 10_000 } });
    await h.run();
    for (let i = 0; i < 10; i++) {
      h.clock.increment(10_000);
      h.lose();
      expect(h.value()).toBe("recovering");
      await h.run();
    }
    expect(h.context().restarts.length).toBeLessThanOrEqual(2);
  });

  it("ESCALATE (a supervised channel gave up) → recovering, counted toward the intensity", async () => {
    const h = connection({ intensity: { maxRestarts: 1, withinMs: 10_000 } });
    await h.run();
    const escalated = new ChannelLimitError("channel failed");
    h.actor.send({ type: "ESCALATE", error: escalated });
    expect(h.value()).toBe("recovering");
    expect(h.context().error).toBe(escalated);
    expect(h.context().restarts).toHaveLength(1);
    await h.run();
    h.actor.send({ type: "ESCALATE", error: escalated });
    expect(h.value()).toBe("degraded");
    expect(h.context().error).toBe(escalated);
    expect(h.context().level).toBe(1);
  });

  it("ESCALATE while restoring also restarts; outside `open` it is ignored", async () => {
    const h = connection();
    h.actor.send({ type: "START" });
    h.actor.send({ type: "ESCALATE", error: recoverable() });
    expect(h.value()).toEqual({ opening: "connecting" });
    h.connect();
    h.actor.send({ type: "ESCALATE", error: recoverable() });
    expect(h.value()).toBe("recovering");
    expect(h.fakes.running("restore")).toBe(false);
  });

  it("restore rejecting with a recoverable error → recovering; with a fatal one → failed", async () => {
    const h = connection();
    h.actor.send({ type: "START" });
    h.connect();
    const dropped = new ConnectionClosedError("closed before it could be restored");
    await h.fakes.reject("restore", dropped);
    expect(h.value()).toBe("recovering");
    expect(h.context().error).toBe(dropped);
    expect(h.context().restarts).toHaveLength(1);
    expect(h.fakes.running("watch")).toBe(false);
    await h.run();

    const h2 = connection();
    h2.actor.send({ type: "START" });
    h2.connect();
    const refused = Object.assign(new Error("access refused"), { recoverable: false });
    await h2.fakes.reject("restore", refused);
    expect(h2.value()).toBe("failed");
    expect(h2.context().error).toBe(refused);
  });

  it("a restore that keeps failing counts toward the restart intensity too", async () => {
    const h = connection({ intensity: { maxRestarts: 2, withinMs: 10_000 } });
    h.actor.send({ type: "START" });
    for (let i = 0; i < 2; i++) {
      h.connect();
      await h.fakes.reject("restore", channelError(405));
      expect(h.value()).toBe("recovering");
      h.clock.increment(100);
    }
    h.connect();
    await h.fakes.reject("restore", channelError(405));
    expect(h.value()).toBe("degraded");
    expect(h.context().level).toBe(1);
  });

  it("a BLOCKED seen during a restore that failed does not carry over to the next connection", async () => {
    const h = connection();
    h.actor.send({ type: "START" });
    h.connect();
    h.fakes.send("watch", { type: "BLOCKED", reason: "memory alarm" });
    await h.fakes.reject("restore", new ConnectionClosedError("dropped"));
    expect(h.value()).toBe("recovering");
    await h.run(); // the new connection is not blocked
    expect(h.context().blockedReason).toBeUndefined();
  });

  it("LOST while blocked recovers and forgets the blocked reason", async () => {
    const h = connection();
    await h.run();
    h.fakes.send("watch", { type: "BLOCKED", reason: "disk alarm" });
    h.lose();
    expect(h.value()).toBe("recovering");
    expect(h.context().blockedReason).toBeUndefined();
    await h.run();
  });

  describe("CLOSE", () => {
    const reach: [string, (h: ConnectionHarness) => Promise<void>][] = [
      ["opening.connecting", async (h) => h.actor.send({ type: "START" })],
      [
        "opening.handshaking",
        async (h) => {
          h.actor.send({ type: "START" });
          h.fakes.send("connect", { type: "SOCKET_OPEN" });
        },
      ],
      [
        "open.restoring",
        async (h) => {
          h.actor.send({ type: "START" });
          h.connect();
        },
      ],
      ["open.running", async (h) => h.run()],
      [
        "open.blocked",
        async (h) => {
          await h.run();
          h.fakes.send("watch", { type: "BLOCKED", reason: "alarm" });
        },
      ],
      [
        "recovering",
        async (h) => {
          await h.run();
          h.lose();
        },
      ],
    ];

    it.each(reach)("from %s → closing → (shutdown done) → closed", async (name, go) => {
      const h = connection();
      await go(h);
      expect(JSON.stringify(h.value())).toContain(name.split(".")[1] ?? name);
      h.actor.send({ type: "CLOSE" });
      expect(h.value()).toBe("closing");
      for (const src of ["connect", "watch", "restore"]) expect(h.fakes.running(src)).toBe(false);
      expect(h.fakes.running("shutdown")).toBe(true);
      h.clock.increment(60_000); // no reconnect is pending any more
      expect(h.value()).toBe("closing");
      h.actor.send({ type: "CLOSE" }); // a second close waits for the same shutdown
      expect(h.fakes.count("shutdown")).toBe(1);
      await h.fakes.resolve("shutdown");
      expect(h.value()).toBe("closed");
      expect(h.actor.getSnapshot().status).toBe("done");
    });

    it("a shutdown that fails still ends closed", async () => {
      const h = connection();
      await h.run();
      h.actor.send({ type: "CLOSE" });
      await h.fakes.reject("shutdown", new Error("close timed out"));
      expect(h.value()).toBe("closed");
    });

    it("from idle and from failed there is nothing to shut down: straight to closed", async () => {
      const h = connection();
      h.actor.send({ type: "CLOSE" });
      expect(h.value()).toBe("closed");
      expect(h.fakes.count("shutdown")).toBe(0);

      const h2 = connection();
      h2.actor.send({ type: "START" });
      h2.fakes.send("connect", { type: "CONNECT_FAILED", error: fatal() });
      expect(h2.value()).toBe("failed");
      h2.actor.send({ type: "CLOSE" });
      expect(h2.value()).toBe("closed");
      expect(h2.fakes.count("shutdown")).toBe(0);
    });

    it("closed is final: the actor is done and no event moves it", () => {
      const h = connection();
      h.actor.send({ type: "CLOSE" });
      const closed = h.actor.getSnapshot();
      expect(closed.status).toBe("done");
      for (const type of ["START", "CLOSE", "CONNECTED"] as const) {
        expect(closed.can({ type })).toBe(false);
        expect(transition(connectionMachine, closed, { type })[0].value).toBe("closed");
      }
    });
  });
});

// ─── channel ────────────────────────────────────────────────────────────────

function channel(input: Partial<ChannelMachineInput> = {}) {
  const clock = new SimulatedClock();
  const fakes = new Fakes();
  const machine = channelMachine.provide({
    actors: { open: fakes.promise("open"), close: fakes.promise("close") },
  });
  const actor = createActor(machine, {
    clock,
    input: { backoff, now: () => clock.now(), random: () => 0.5, ...input },
  });
  actor.start();
  const h = {
    actor,
    clock,
    fakes,
    value: () => actor.getSnapshot().value,
    context: () => actor.getSnapshot().context,
    /** From waiting, opening or reopening to open.flowing. */
    async open() {
      if (h.value() === "waiting") actor.send({ type: "CONNECTED" });
      if (h.value() === "reopening") leave(h, "reopening");
      await fakes.resolve("open");
      expect(h.value()).toEqual({ open: "flowing" });
    },
  };
  return h;
}

type ChannelHarness = ReturnType<typeof channel>;

describe("channel machine", () => {
  it("pure: waits for the connection, or opens at once when created with connected: true", () => {
    const pure = { backoff, now: () => 0, random: () => 0.5 };
    const [waiting, a0] = initialTransition(channelMachine, { ...pure, connected: false });
    expect(waiting.value).toBe("waiting");
    expect(spawned(a0)).toEqual([]);
    const [opening, a1] = initialTransition(channelMachine, { ...pure, connected: true });
    expect(opening.value).toBe("opening");
    expect(spawned(a1).map((s) => s.src)).toEqual(["open"]);
    const [opened] = transition(channelMachine, opening, done("0.channel.opening"));
    expect(opened.value).toEqual({ open: "flowing" });
    const [reopening, a2] = transition(channelMachine, opened, {
      type: "CHANNEL_CLOSED",
      error: channelError(),
    });
    expect(reopening.value).toBe("reopening");
    expect(scheduledDelay(a2)).toBe(50);
    const [again] = transition(channelMachine, reopening, afterDelay("channel.reopening"));
    expect(again.value).toBe("opening");
  });

  it("waiting → CONNECTED → opening → open.flowing ⇄ paused (FLOW)", async () => {
    const h = channel();
    expect(h.value()).toBe("waiting");
    expect(h.fakes.count("open")).toBe(0);
    h.actor.send({ type: "CONNECTED" });
    expect(h.value()).toBe("opening");
    expect(h.context().connected).toBe(true);
    await h.fakes.resolve("open");
    expect(h.value()).toEqual({ open: "flowing" });
    h.actor.send({ type: "FLOW", active: true }); // already flowing
    expect(h.value()).toEqual({ open: "flowing" });
    h.actor.send({ type: "FLOW", active: false });
    expect(h.value()).toEqual({ open: "paused" });
    h.actor.send({ type: "FLOW", active: false });
    expect(h.value()).toEqual({ open: "paused" });
    h.actor.send({ type: "FLOW", active: true });
    expect(h.value()).toEqual({ open: "flowing" });
  });

  it("connected: true input starts in opening", () => {
    const h = channel({ connected: true });
    expect(h.value()).toBe("opening");
    expect(h.fakes.running("open")).toBe(true);
  });

  it("CHANNEL_CLOSED → reopening → (backoff) → opening; failed opens grow the delay; success resets it", async () => {
    const h = channel({ connected: true });
    await h.open();
    const closed = channelError(404);
    h.actor.send({ type: "CHANNEL_CLOSED", error: closed });
    expect(h.value()).toBe("reopening");
    expect(h.context()).toMatchObject({ attempt: 1, error: closed });
    expectBackoff(h, 50, "reopening");
    expect(h.value()).toBe("opening");
    await h.fakes.reject("open", new ConnectionClosedError("not connected"));
    expect(h.value()).toBe("reopening");
    expectBackoff(h, 100, "reopening");
    await h.fakes.reject("open", new ConnectionClosedError("not connected"));
    expectBackoff(h, 200, "reopening");
    await h.fakes.resolve("open");
    expect(h.value()).toEqual({ open: "flowing" });
    expect(h.context()).toMatchObject({ attempt: 0, error: undefined });
  });

  it("CHANNEL_CLOSED while paused reopens too", async () => {
    const h = channel({ connected: true });
    await h.open();
    h.actor.send({ type: "FLOW", active: false });
    h.actor.send({ type: "CHANNEL_CLOSED", error: channelError() });
    expect(h.value()).toBe("reopening");
  });

  it("restart intensity: maxRestarts restarts reopen, one more → failed", async () => {
    const h = channel({ connected: true, intensity: { maxRestarts: 2, withinMs: 10_000 } });
    await h.open();
    h.actor.send({ type: "CHANNEL_CLOSED", error: channelError() });
    leave(h, "reopening");
    await h.fakes.reject("open", channelError(405)); // a failed open counts as a restart too
    expect(h.value()).toBe("reopening");
    expect(h.context().restarts).toHaveLength(2);
    await h.open();
    const last = channelError(404);
    h.actor.send({ type: "CHANNEL_CLOSED", error: last });
    expect(h.value()).toBe("failed");
    expect(h.context().error).toBe(last);

    // Also when it is an opening that would be one restart too many.
    const h2 = channel({ connected: true, intensity: { maxRestarts: 1, withinMs: 10_000 } });
    await h2.fakes.reject("open", channelError());
    expect(h2.value()).toBe("reopening");
    leave(h2, "reopening");
    await h2.fakes.reject("open", channelError());
    expect(h2.value()).toBe("failed");
  });

  it("a non-recoverable error → failed (on CHANNEL_CLOSED or when opening)", async () => {
    const h = channel({ connected: true });
    await h.open();
    const e = new ChannelLimitError("no channel ids left");
    h.actor.send({ type: "CHANNEL_CLOSED", error: e });
    expect(h.value()).toBe("failed");
    expect(h.context().error).toBe(e);

    const h2 = channel({ connected: true });
    await h2.fakes.reject("open", e);
    expect(h2.value()).toBe("failed");
    expect(h2.context().error).toBe(e);
  });

  const reach: [string, (h: ChannelHarness) => Promise<void>][] = [
    ["waiting", async () => undefined],
    ["opening", async (h) => h.actor.send({ type: "CONNECTED" })],
    ["open.flowing", async (h) => h.open()],
    [
      "open.paused",
      async (h) => {
        await h.open();
        h.actor.send({ type: "FLOW", active: false });
      },
    ],
    [
      "reopening",
      async (h) => {
        await h.open();
        h.actor.send({ type: "CHANNEL_CLOSED", error: channelError() });
      },
    ],
    [
      "failed",
      async (h) => {
        await h.open();
        h.actor.send({ type: "CHANNEL_CLOSED", error: new ChannelLimitError("x") });
      },
    ],
  ];

  it.each(reach)("CONNECTION_LOST from %s → waiting (not connected, attempt reset)", async (name, go) => {
    const h = channel();
    await go(h);
    expect(JSON.stringify(h.value())).toContain(name.split(".").at(-1));
    h.actor.send({ type: "CONNECTION_LOST" });
    expect(h.value()).toBe("waiting");
    expect(h.context()).toMatchObject({ connected: false, attempt: 0 });
    expect(h.fakes.running("open")).toBe(false);
    h.clock.increment(60_000); // a pending reopen is cancelled
    expect(h.value()).toBe("waiting");
    h.actor.send({ type: "CONNECTED" }); // the connection is back: open again
    expect(h.value()).toBe("opening");
  });

  it.each(reach)("CLOSE from %s → closing → (close done) → closed", async (_name, go) => {
    const h = channel();
    await go(h);
    h.actor.send({ type: "CLOSE" });
    expect(h.value()).toBe("closing");
    expect(h.fakes.running("open")).toBe(false);
    h.actor.send({ type: "CLOSE" });
    expect(h.fakes.count("close")).toBe(1);
    await h.fakes.resolve("close");
    expect(h.value()).toBe("closed");
    expect(h.actor.getSnapshot().status).toBe("done");
  });

  it("closing: a failed close or CONNECTION_LOST still ends closed", async () => {
    const h = channel({ connected: true });
    await h.open();
    h.actor.send({ type: "CLOSE" });
    await h.fakes.reject("close", new Error("timeout"));
    expect(h.value()).toBe("closed");

    const h2 = channel({ connected: true });
    await h2.open();
    h2.actor.send({ type: "CLOSE" });
    h2.actor.send({ type: "CONNECTION_LOST" });
    expect(h2.value()).toBe("closed");
    expect(h2.fakes.running("close")).toBe(false);
  });
});

// ─── consumer ───────────────────────────────────────────────────────────────

function consumer(input: Partial<ConsumerMachineInput> = {}) {
  const clock = new SimulatedClock();
  const fakes = new Fakes();
  /** What the machine told the application of (its `report` action). */
  const reports: unknown[] = [];
  const machine = consumerMachine.provide({
    actors: { subscribe: fakes.promise("subscribe"), drain: fakes.promise("drain") },
    actions: { report: (_, { error }) => void reports.push(error) },
  });
  const actor = createActor(machine, {
    clock,
    input: { backoff: { initial: 100, max: 30_000, multiplier: 2 }, random: () => 0.5, ...input },
  });
  actor.start();
  const h = {
    actor,
    clock,
    fakes,
    reports,
    value: () => actor.getSnapshot().value,
    context: () => actor.getSnapshot().context,
    async consume() {
      if (h.value() === "waiting") actor.send({ type: "CONNECTED" });
      if (h.value() === "resubscribing") leave(h, "resubscribing");
      await fakes.resolve("subscribe");
      expect(h.value()).toBe("consuming");
    },
  };
  return h;
}

type ConsumerHarness = ReturnType<typeof consumer>;

describe("consumer machine", () => {
  it("pure: waiting → subscribing → consuming → SERVER_CANCEL → resubscribing → subscribing", () => {
    let [s, actions] = initialTransition(consumerMachine, {});
    expect(s.value).toBe("waiting");
    expect(s.context.backoff).toEqual(CONSUMER_BACKOFF);
    [s, actions] = transition(consumerMachine, s, { type: "CONNECTED" });
    expect(s.value).toBe("subscribing");
    expect(spawned(actions).map((x) => x.src)).toEqual(["subscribe"]);
    [s] = transition(consumerMachine, s, done("0.consumer.subscribing"));
    expect(s.value).toBe("consuming");
    [s, actions] = transition(consumerMachine, s, { type: "SERVER_CANCEL" });
    expect(s.value).toBe("resubscribing");
    expect(scheduledDelay(actions)).toBeLessThan(CONSUMER_BACKOFF.initial);
    [s] = transition(consumerMachine, s, afterDelay("consumer.resubscribing"));
    expect(s.value).toBe("subscribing");
    [s] = transition(consumerMachine, s, failedWith("0.consumer.subscribing", fatal()));
    expect(s.value).toBe("failed");
  });

  it("waiting → CONNECTED → subscribing → consuming → SERVER_CANCEL → resubscribing → (clock) → subscribing", async () => {
    const h = consumer();
    expect(h.value()).toBe("waiting");
    expect(h.fakes.count("subscribe")).toBe(0);
    await h.consume();
    expect(h.context()).toMatchObject({ attempt: 0, error: undefined });
    h.actor.send({ type: "SERVER_CANCEL" });
    expect(h.value()).toBe("resubscribing");
    expect(h.context().attempt).toBe(1);
    expectBackoff(h, 50, "resubscribing");
    expect(h.value()).toBe("subscribing");
    expect(h.fakes.count("subscribe")).toBe(2);
    await h.fakes.resolve("subscribe");
    expect(h.value()).toBe("consuming");
    expect(h.context().attempt).toBe(0);
  });

  it("connected: true input starts subscribing", () => {
    const h = consumer({ connected: true });
    expect(h.value()).toBe("subscribing");
    expect(h.fakes.running("subscribe")).toBe(true);
  });

  it("CHANNEL_CLOSED while consuming → resubscribing, keeping the error", async () => {
    const h = consumer({ connected: true });
    await h.consume();
    const e = channelError(404);
    h.actor.send({ type: "CHANNEL_CLOSED", error: e });
    expect(h.value()).toBe("resubscribing");
    expect(h.context().error).toBe(e);
    await h.consume();
  });

  it("a recoverable subscribe error → resubscribing with a growing delay, capped at 30 s", async () => {
    const h = consumer({ connected: true });
    const delays = [50, 100, 200, 400, 800, 1600, 3200, 6400, 12_800, 15_000, 15_000];
    for (const delay of delays) {
      await h.fakes.reject("subscribe", channelError(404));
      expect(h.value()).toBe("resubscribing");
      expectBackoff(h, delay, "resubscribing");
      expect(h.value()).toBe("subscribing");
    }
    expect(h.context().attempt).toBe(delays.length);
    await h.fakes.resolve("subscribe");
    expect(h.context().attempt).toBe(0);
  });

  it("a fatal subscribe error → failed; CANCEL then ends it", async () => {
    const h = consumer({ connected: true });
    const e = new ChannelLimitError("no channel ids left");
    await h.fakes.reject("subscribe", e);
    expect(h.value()).toBe("failed");
    expect(h.context().error).toBe(e);
    h.clock.increment(60_000);
    expect(h.fakes.count("subscribe")).toBe(1);
    h.actor.send({ type: "CANCEL" });
    expect(h.value()).toBe("cancelled");
    expect(h.fakes.count("drain")).toBe(0);
  });

  describe("subscription faults (src/faults.ts)", () => {
    const notFound = () =>
      new QueueNotFoundError("orders", {
        cause: new ChannelClosedByBroker({
          replyCode: 404,
          replyText: "NOT_FOUND",
          classId: 60,
          methodId: 20,
        }),
      });
    const refused = (replyCode: 403 | 406) =>
      new ChannelClosedByBroker({
        replyCode,
        replyText: replyCode === 403 ? "ACCESS_REFUSED" : "PRECONDITION_FAILED",
        classId: 60,
        methodId: 20,
        methodName: "basic.consume",
      });
    const reportsIn = (actions: readonly { type: string; params?: unknown }[]) =>
      actions.filter((a) => a.type === "report").map((a) => (a.params as { error: unknown }).error);

    it("pure: a missing queue → resubscribing, reported; a refusal → failed, reported; a plain fault → resubscribing, not reported", () => {
      const [start] = initialTransition(consumerMachine, { connected: true, random: () => 0.5 });
      expect(start.value).toBe("subscribing");

      const missing = notFound();
      let [s, actions] = transition(consumerMachine, start, failedWith("0.consumer.subscribing", missing));
      expect(s.value).toBe("resubscribing");
      expect(s.context).toMatchObject({ attempt: 1, error: missing });
      expect(reportsIn(actions)).toEqual([missing]);
      // The default backoff: the first retry at once (full jitter under 100 ms).
      expect(scheduledDelay(actions)).toBe(50);

      for (const code of [403, 406] as const) {
        const e = refused(code);
        [s, actions] = transition(consumerMachine, start, failedWith("0.consumer.subscribing", e));
        expect(s.value).toBe("failed");
        expect(s.context.error).toBe(e);
        expect(reportsIn(actions)).toEqual([e]);
        expect(scheduledDelay(actions)).toBeUndefined();
      }

      // 405 RESOURCE_LOCKED (an exclusive queue of another connection): transient, reported.
      const locked = channelError(405);
      [s, actions] = transition(consumerMachine, start, failedWith("0.consumer.subscribing", locked));
      expect(s.value).toBe("resubscribing");
      expect(reportsIn(actions)).toEqual([locked]);

      const lost = new ConnectionClosedError("the connection closed");
      [s, actions] = transition(consumerMachine, start, failedWith("0.consumer.subscribing", lost));
      expect(s.value).toBe("resubscribing");
      expect(s.context.error).toBe(lost);
      expect(reportsIn(actions)).toEqual([]);
    });

    it("pure: leaving resubscribing clears the error (the subscribing event carries none)", () => {
      const [start] = initialTransition(consumerMachine, { connected: true });
      let [s] = transition(consumerMachine, start, failedWith("0.consumer.subscribing", notFound()));
      [s] = transition(consumerMachine, s, afterDelay("consumer.resubscribing"));
      expect(s.value).toBe("subscribing");
      expect(s.context.error).toBeUndefined();
      expect(s.context.attempt).toBe(1);
    });

    it("a missing queue: retried for ever with the default backoff, capped at 5 s; every attempt reported (the client rate-limits); consuming once the queue exists", async () => {
      const h = consumer({ connected: true, backoff: CONSUMER_BACKOFF });
      expect(CONSUMER_BACKOFF.max).toBe(5_000);
      // random 0.5: half of each ceiling, 100 × 2^n capped at 5000.
      const delays = [50, 100, 200, 400, 800, 1600, 2500, 2500, 2500, 2500];
      for (const [i, delay] of delays.entries()) {
        const e = notFound();
        await h.fakes.reject("subscribe", e);
        expect(h.value()).toBe("resubscribing");
        expect(h.context()).toMatchObject({ attempt: i + 1, error: e });
        expect(h.reports.at(-1)).toBe(e);
        expectBackoff(h, delay, "resubscribing");
        expect(h.value()).toBe("subscribing");
        expect(h.context().error).toBeUndefined();
      }
      expect(h.reports).toHaveLength(delays.length);
      expect(h.fakes.count("subscribe")).toBe(delays.length + 1);
      // The queue was declared meanwhile: the next attempt succeeds.
      await h.fakes.resolve("subscribe");
      expect(h.value()).toBe("consuming");
      expect(h.context()).toMatchObject({ attempt: 0, error: undefined });
    });

    it("a refusal → failed, reported once; it stays failed through reconnections until CANCEL", async () => {
      const h = consumer({ connected: true });
      const e = refused(403);
      await h.fakes.reject("subscribe", e);
      expect(h.value()).toBe("failed");
      expect(h.context().error).toBe(e);
      expect(h.reports).toEqual([e]);
      h.actor.send({ type: "CONNECTION_LOST" });
      expect(h.value()).toBe("failed");
      expect(h.context()).toMatchObject({ connected: false, error: e });
      h.actor.send({ type: "CONNECTED" });
      h.clock.increment(60_000);
      expect(h.value()).toBe("failed");
      expect(h.fakes.count("subscribe")).toBe(1);
      h.actor.send({ type: "CANCEL" });
      expect(h.value()).toBe("cancelled");
      expect(h.reports).toHaveLength(1);
    });

    it("a server cancel or a channel error while consuming is retried, not reported", async () => {
      const h = consumer({ connected: true });
      await h.consume();
      h.actor.send({ type: "SERVER_CANCEL" });
      await h.consume();
      h.actor.send({ type: "CHANNEL_CLOSED", error: refused(406) });
      expect(h.value()).toBe("resubscribing");
      await h.consume();
      expect(h.reports).toEqual([]);
    });

    it("CONNECTION_LOST while resubscribing after a missing queue → waiting, the error cleared", async () => {
      const h = consumer({ connected: true });
      await h.fakes.reject("subscribe", notFound());
      h.actor.send({ type: "CONNECTION_LOST" });
      expect(h.value()).toBe("waiting");
      expect(h.context()).toMatchObject({ attempt: 0, error: undefined, connected: false });
      await h.consume();
    });
  });

  describe("CANCEL", () => {
    it("from consuming → draining → (drain done) → cancelled", async () => {
      const h = consumer({ connected: true });
      await h.consume();
      h.actor.send({ type: "CANCEL" });
      expect(h.value()).toBe("draining");
      expect(h.fakes.running("drain")).toBe(true);
      h.actor.send({ type: "CANCEL" });
      expect(h.fakes.count("drain")).toBe(1);
      await h.fakes.resolve("drain");
      expect(h.value()).toBe("cancelled");
      expect(h.actor.getSnapshot().status).toBe("done");
    });

    it("from subscribing → draining (the subscribe is abandoned) → cancelled even when the drain fails", async () => {
      const h = consumer({ connected: true });
      h.actor.send({ type: "CANCEL" });
      expect(h.value()).toBe("draining");
      expect(h.fakes.running("subscribe")).toBe(false);
      expect(h.fakes.stopped).toContain("subscribe");
      await h.fakes.reject("drain", new Error("basic.cancel timed out"));
      expect(h.value()).toBe("cancelled");
    });

    it("from waiting and from resubscribing → cancelled directly, nothing to drain", async () => {
      const h = consumer();
      h.actor.send({ type: "CANCEL" });
      expect(h.value()).toBe("cancelled");

      const h2 = consumer({ connected: true });
      await h2.consume();
      h2.actor.send({ type: "SERVER_CANCEL" });
      h2.actor.send({ type: "CANCEL" });
      expect(h2.value()).toBe("cancelled");
      h2.clock.increment(60_000); // the pending resubscribe never fires
      expect(h2.fakes.count("subscribe")).toBe(1);
      expect(h2.fakes.count("drain")).toBe(0);
    });
  });

  it("CONNECTION_LOST during draining → cancelled (nothing left to drain on a dead connection)", async () => {
    const h = consumer({ connected: true });
    await h.consume();
    h.actor.send({ type: "CANCEL" });
    h.actor.send({ type: "CONNECTION_LOST" });
    expect(h.value()).toBe("cancelled");
    expect(h.fakes.running("drain")).toBe(false);
  });

  const reach: [string, (h: ConsumerHarness) => Promise<void>][] = [
    ["waiting", async () => undefined],
    ["subscribing", async (h) => h.actor.send({ type: "CONNECTED" })],
    ["consuming", async (h) => h.consume()],
    [
      "resubscribing",
      async (h) => {
        await h.consume();
        h.actor.send({ type: "SERVER_CANCEL" });
      },
    ],
  ];

  it.each(reach)("CONNECTION_LOST from %s → waiting, then CONNECTED subscribes again", async (name, go) => {
    const h = consumer();
    await go(h);
    expect(h.value()).toBe(name);
    h.actor.send({ type: "CONNECTION_LOST" });
    expect(h.value()).toBe("waiting");
    expect(h.context()).toMatchObject({ connected: false, attempt: 0 });
    expect(h.fakes.running("subscribe")).toBe(false);
    h.clock.increment(60_000);
    expect(h.value()).toBe("waiting");
    await h.consume();
  });
});
