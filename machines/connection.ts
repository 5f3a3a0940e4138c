/**
 * The connection lifecycle, supervisor of everything on the connection.
 *
 *   idle ─START→ opening{connecting ─SOCKET_OPEN→ handshaking} ─CONNECTED→ open{restoring → running ⇄ blocked}
 *   opening ─CONNECT_FAILED→ recovering (backoff, next host) ─after→ opening
 *   open ─LOST / ESCALATE→ recovering (next host), or failed when the restart intensity is exceeded
 *
 * Hosts: the one that refused or whose connection died rests for `hostCooldown` ms; the next
 * attempt goes to the next host not resting (machines/hosts.ts).
 *   any ─CLOSE→ closing → closed;  non-recoverable errors → failed
 *
 * Pure: opening a socket, restoring topology, watching the live connection and
 * shutting down are the named actors `connect`, `restore`, `watch` and `shutdown`,
 * which the client provides; time comes from the `now` and `random` inputs and
 * XState's delays (a SimulatedClock in tests).
 */
import { assign, fromCallback, fromPromise, setup } from "xstate";
import { RestartIntensityError } from "../src/errors.js";
import {
  type BackoffOptions,
  backoffDelay,
  DEFAULT_BACKOFF,
  DEFAULT_INTENSITY,
  type IntensityOptions,
  intensityExceeded,
  recordRestart,
} from "./backoff.js";
import { coolDown, DEFAULT_HOST_COOLDOWN, nextHost } from "./hosts.js";

/** Errors carry `recoverable` (warren's error tree); anything else is taken as recoverable. */
export interface LifecycleError extends Error {
  recoverable?: boolean;
}

export interface ConnectionMachineInput {
  /** How many hosts to rotate through. */
  hostCount: number;
  backoff?: BackoffOptions;
  intensity?: IntensityOptions;
  /** How long a host that died or refused rests before it is tried again, in ms (default 10000). */
  hostCooldown?: number;
  now?: () => number;
  random?: () => number;
}

export interface ConnectionContext {
  hostCount: number;
  /** Host the next (or current) attempt uses. */
  hostIndex: number;
  /** Per host: resting until this time (ms, `now()`'s clock); 0 = available. */
  cooldownUntil: number[];
  hostCooldown: number;
  /** Consecutive failed attempts since the connection was last open. */
  attempt: number;
  /** Times of recoveries from an open connection, for the restart intensity. */
  restarts: number[];
  error: LifecycleError | undefined;
  blockedReason: string | undefined;
  backoff: BackoffOptions;
  intensity: IntensityOptions;
  now: () => number;
  random: () => number;
}

export type ConnectionEvent =
  | { type: "START" }
  | { type: "SOCKET_OPEN" }
  | { type: "CONNECTED" }
  | { type: "CONNECT_FAILED"; error: LifecycleError }
  | { type: "LOST"; error: LifecycleError }
  | { type: "ESCALATE"; error: LifecycleError }
  | { type: "BLOCKED"; reason: string }
  | { type: "UNBLOCKED" }
  | { type: "CLOSE" };

/** Input of the `connect` actor: which host to try. */
export interface ConnectInput {
  hostIndex: number;
  attempt: number;
}

const isFatal = (e: LifecycleError | undefined) => e?.recoverable === false;

export const connectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionMachineInput,
  },
  actors: {
    /** Opens TCP (sends SOCKET_OPEN) and completes the handshake (CONNECTED), or sends CONNECT_FAILED. */
    connect: fromCallback<ConnectionEvent, ConnectInput>(() => undefined),
    /** Re-declares topology, reopens channels, resumes consumers. */
    restore: fromPromise<void>(async () => undefined),
    /** Forwards the live connection's close/blocked/unblocked as LOST/BLOCKED/UNBLOCKED. */
    watch: fromCallback<ConnectionEvent>(() => undefined),
    /** Graceful shutdown: cancel consumers, drain, close channels and the connection. */
    shutdown: fromPromise<void>(async () => undefined),
  },
  guards: {
    fatal: ({ event }) => "error" in event && isFatal(event.error),
    restoreFatal: ({ event }) => isFatal((event as { error?: LifecycleError }).error),
    intensityExceeded: ({ context }) => intensityExceeded(context.restarts, context.now(), context.intensity),
  },
  actions: {
    setError: assign({ error: ({ event }) => ("error" in event ? event.error : undefined) }),
    intensityError: assign({
      error: ({ context, event }) =>
        new RestartIntensityError(
          `gave up: more than ${context.intensity.maxRestarts} connection restarts within ${context.intensity.withinMs} ms` +
            ("error" in event ? `; last: ${event.error.message}` : ""),
          { cause: "error" in event ? event.error : undefined },
        ),
    }),
    setRestoreError: assign({ error: ({ event }) => (event as { error?: LifecycleError }).error }),
    connectFailed: assign({ attempt: ({ context }) => context.attempt + 1 }),
    /** The current host refused or died: it rests, and the next attempt goes elsewhere if it can. */
    leaveHost: assign(({ context }) => {
      const now = context.now();
      const cooldownUntil = coolDown(context.cooldownUntil, context.hostIndex, now + context.hostCooldown);
      return { cooldownUntil, hostIndex: nextHost(context.hostIndex, cooldownUntil, now) };
    }),
    opened: assign({ attempt: 0, error: undefined }),
    countRestart: assign({
      restarts: ({ context }) => recordRestart(context.restarts, context.now(), context.intensity),
    }),
    setBlocked: assign({
      blockedReason: ({ event }) => (event.type === "BLOCKED" ? event.reason : undefined),
    }),
    clearBlocked: assign({ blockedReason: undefined }),
  },
  delays: {
    backoff: ({ context }) => backoffDelay(Math.max(0, context.attempt - 1), context.backoff, context.random),
  },
}).createMachine({
  id: "connection",
  context: ({ input }) => ({
    hostCount: Math.max(1, input.hostCount),
    hostIndex: 0,
    cooldownUntil: new Array<number>(Math.max(1, input.hostCount)).fill(0),
    hostCooldown: input.hostCooldown ?? DEFAULT_HOST_COOLDOWN,
    attempt: 0,
    restarts: [],
    error: undefined,
    blockedReason: undefined,
    backoff: input.backoff ?? DEFAULT_BACKOFF,
    intensity: input.intensity ?? DEFAULT_INTENSITY,
    now: input.now ?? Date.now,
    random: input.random ?? Math.random,
  }),
  initial: "idle",
  states: {
    idle: {
      on: { START: "opening", CLOSE: "closed" },
    },
    opening: {
      initial: "connecting",
      invoke: {
        src: "connect",
        input: ({ context }) => ({ hostIndex: context.hostIndex, attempt: context.attempt }),
      },
      states: {
        connecting: { on: { SOCKET_OPEN: "handshaking" } },
        handshaking: {},
      },
      on: {
        CONNECTED: { target: "open", actions: "opened" },
        CONNECT_FAILED: [
          { guard: "fatal", target: "failed", actions: "setError" },
          { target: "recovering", actions: ["setError", "connectFailed", "leaveHost"] },
        ],
        CLOSE: "closing",
      },
    },
    open: {
      initial: "restoring",
      invoke: { src: "watch" },
      states: {
        restoring: {
          invoke: {
            src: "restore",
            onDone: "running",
            onError: [
              {
                guard: "restoreFatal",
                target: "#connection.failed",
                actions: ["setRestoreError", "clearBlocked"],
              },
              // A restore that failed (e.g. the connection dropped meanwhile) is a lost connection,
              // bounded by the same restart intensity as LOST.
              {
                guard: "intensityExceeded",
                target: "#connection.failed",
                actions: ["intensityError", "clearBlocked"],
              },
              {
                target: "#connection.recovering",
                actions: ["setRestoreError", "countRestart", "clearBlocked", "leaveHost"],
              },
            ],
          },
          on: { BLOCKED: { actions: "setBlocked" }, UNBLOCKED: { actions: "clearBlocked" } },
        },
        running: {
          always: { guard: ({ context }) => context.blockedReason !== undefined, target: "blocked" },
          on: { BLOCKED: { target: "blocked", actions: "setBlocked" } },
        },
        blocked: {
          on: { UNBLOCKED: { target: "running", actions: "clearBlocked" } },
        },
      },
      on: {
        LOST: [
          { guard: "fatal", target: "failed", actions: ["setError", "clearBlocked"] },
          { guard: "intensityExceeded", target: "failed", actions: ["intensityError", "clearBlocked"] },
          { target: "recovering", actions: ["setError", "countRestart", "clearBlocked", "leaveHost"] },
        ],
        ESCALATE: [
          { guard: "intensityExceeded", target: "failed", actions: ["intensityError", "clearBlocked"] },
          // A supervised channel gave up: the connection restarts, on the same host if it is the only one.
          { target: "recovering", actions: ["setError", "countRestart", "clearBlocked"] },
        ],
        CLOSE: "closing",
      },
    },
    recovering: {
      after: { backoff: "opening" },
      on: { CLOSE: "closing" },
    },
    closing: {
      invoke: { src: "shutdown", onDone: "closed", onError: "closed" },
    },
    failed: {
      on: { CLOSE: "closed" },
    },
    closed: { type: "final" },
  },
});

export type ConnectionMachine = typeof connectionMachine;
