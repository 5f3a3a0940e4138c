/**
 * The connection lifecycle, supervisor of everything on the connection.
 *
 *   idle ─START→ opening{connecting ─SOCKET_OPEN→ handshaking} ─CONNECTED→ open{restoring → running ⇄ blocked}
 *   opening ─CONNECT_FAILED→ recovering (backoff, next host) ─after→ opening
 *   open ─LOST / ESCALATE→ recovering (next host)
 *   open ─LOST / ESCALATE, restart intensity exceeded→ degraded (escalated backoff) ─after→ opening
 *
 * Transient faults are survived for ever. An exceeded restart intensity is not death but a growing
 * backoff (as Kubernetes' CrashLoopBackOff): the `degraded` condition (context.degraded) and its
 * level last until the connection has stayed open for `escalation.resetAfterMs`; while it lasts, every
 * wait between attempts is the `degraded` state. `failed` is for permanent errors (recoverable false)
 * and for the caller's own limit, `giveUpAfter` (attempts or ms since the connection was last healthy).
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
  DEFAULT_ESCALATION,
  DEFAULT_INTENSITY,
  type EscalationOptions,
  escalatedDelay,
  type GiveUpOptions,
  givingUp,
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
  escalation?: EscalationOptions;
  /** The caller's opt-in limit; without it the machine never gives up on a transient fault. */
  giveUpAfter?: GiveUpOptions;
  /** How long a host that died or refused rests before it is tried again, in ms (default 10000). */
  hostCooldown?: number;
  now?: () => number;
  random?: () => number;
}

export interface ConnectionContext {
  hostCount: number;
  /** Host the next (or current) attempt uses. */
  hostIndex: number;
  /** Host of the attempt or connection that failed last (what a recovering/degraded/failed state concerns). */
  failedHost: number;
  /** Per host: resting until this time (ms, `now()`'s clock); 0 = available. */
  cooldownUntil: number[];
  hostCooldown: number;
  /** Consecutive failed attempts since the connection was last open. */
  attempt: number;
  /** Times of recoveries from an open connection, for the restart intensity. */
  restarts: number[];
  /** The restart intensity was exceeded since the connection was last healthy. */
  degraded: boolean;
  /** How many times it was exceeded since then (the escalated backoff's level). */
  level: number;
  /** Failed attempts and restarts since the connection was last healthy (giveUpAfter.attempts). */
  troubles: number;
  /** When the first of them happened (giveUpAfter.ms), or the start. */
  troubleSince: number | undefined;
  /** Only the error that caused the current state: set by a failure, cleared when an attempt starts. */
  error: LifecycleError | undefined;
  blockedReason: string | undefined;
  backoff: BackoffOptions;
  intensity: IntensityOptions;
  escalation: EscalationOptions;
  giveUpAfter: GiveUpOptions | undefined;
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
    /** This failure reaches the caller's giveUpAfter limit. */
    giveUp: ({ context }) =>
      givingUp(context.giveUpAfter, context.troubles + 1, context.troubleSince, context.now()),
    /** The restart intensity is exceeded by this restart, or was since the connection was last healthy. */
    degrade: ({ context }) =>
      context.degraded || intensityExceeded(context.restarts, context.now(), context.intensity),
    isDegraded: ({ context }) => context.degraded,
  },
  actions: {
    setError: assign({ error: ({ event }) => ("error" in event ? event.error : undefined) }),
    giveUpError: assign({
      error: ({ context, event }) => {
        const cause = (event as { error?: LifecycleError }).error;
        const g = context.giveUpAfter ?? {};
        const limit = [
          g.attempts !== undefined ? `${g.attempts} attempts` : undefined,
          g.ms !== undefined ? `${g.ms} ms` : undefined,
        ]
          .filter((x) => x !== undefined)
          .join(" or ");
        const since = context.troubleSince === undefined ? 0 : context.now() - context.troubleSince;
        return new RestartIntensityError(
          `gave up, as giveUpAfter asks (${limit}): ${context.troubles + 1} failed attempts and restarts in ${since} ms without staying connected` +
            (cause ? `; last: ${cause.message}` : ""),
          { cause },
        );
      },
    }),
    /** Counts a failed attempt or restart since the connection was last healthy. */
    trouble: assign(({ context }) => ({
      troubles: context.troubles + 1,
      troubleSince: context.troubleSince ?? context.now(),
    })),
    /**
     * Degraded; one level up when this restart exceeds the intensity (a single loss while already
     * degraded keeps the level: the backoff grows with the rate of restarts, not their number).
     */
    escalate: assign(({ context }) => ({
      degraded: true,
      level: context.level + (intensityExceeded(context.restarts, context.now(), context.intensity) ? 1 : 0),
    })),
    /** The connection stayed up for escalation.resetAfterMs: healthy again. */
    healthy: assign({ degraded: false, level: 0, troubles: 0, troubleSince: undefined }),
    noteHost: assign({ failedHost: ({ context }) => context.hostIndex }),
    startAttempt: assign({ error: undefined }),
    setRestoreError: assign({ error: ({ event }) => (event as { error?: LifecycleError }).error }),
    connectFailed: assign({ attempt: ({ context }) => context.attempt + 1 }),
    /** The current host refused or died: it rests, and the next attempt goes elsewhere if it can. */
    leaveHost: assign(({ context }) => {
      const now = context.now();
      const cooldownUntil = coolDown(context.cooldownUntil, context.hostIndex, now + context.hostCooldown);
      return { cooldownUntil, hostIndex: nextHost(context.hostIndex, cooldownUntil, now) };
    }),
    opened: assign({ attempt: 0, error: undefined }),
    started: assign({ troubleSince: ({ context }) => context.troubleSince ?? context.now() }),
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
    /** The escalated wait while degraded (never shorter than the plain one). */
    escalated: ({ context }) =>
      Math.max(
        escalatedDelay(context.level, context.backoff, context.escalation, context.random),
        backoffDelay(Math.max(0, context.attempt - 1), context.backoff, context.random),
      ),
    resetAfter: ({ context }) => context.escalation.resetAfterMs,
  },
}).createMachine({
  id: "connection",
  context: ({ input }) => ({
    hostCount: Math.max(1, input.hostCount),
    hostIndex: 0,
    failedHost: 0,
    cooldownUntil: new Array<number>(Math.max(1, input.hostCount)).fill(0),
    hostCooldown: input.hostCooldown ?? DEFAULT_HOST_COOLDOWN,
    attempt: 0,
    restarts: [],
    degraded: false,
    level: 0,
    troubles: 0,
    troubleSince: undefined,
    error: undefined,
    blockedReason: undefined,
    backoff: input.backoff ?? DEFAULT_BACKOFF,
    intensity: input.intensity ?? DEFAULT_INTENSITY,
    escalation: input.escalation ?? DEFAULT_ESCALATION,
    giveUpAfter: input.giveUpAfter,
    now: input.now ?? Date.now,
    random: input.random ?? Math.random,
  }),
  initial: "idle",
  states: {
    idle: {
      on: { START: { target: "opening", actions: "started" }, CLOSE: "closed" },
    },
    opening: {
      initial: "connecting",
      entry: "startAttempt",
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
          { guard: "fatal", target: "failed", actions: ["noteHost", "setError"] },
          { guard: "giveUp", target: "failed", actions: ["noteHost", "giveUpError"] },
          {
            guard: "isDegraded",
            target: "degraded",
            actions: ["noteHost", "setError", "connectFailed", "trouble", "leaveHost"],
          },
          {
            target: "recovering",
            actions: ["noteHost", "setError", "connectFailed", "trouble", "leaveHost"],
          },
        ],
        CLOSE: "closing",
      },
    },
    open: {
      initial: "restoring",
      invoke: { src: "watch" },
      // Up for long enough: the degraded condition, its level and the giveUpAfter count reset.
      after: { resetAfter: { actions: "healthy" } },
      states: {
        restoring: {
          invoke: {
            src: "restore",
            onDone: "running",
            onError: [
              {
                guard: "restoreFatal",
                target: "#connection.failed",
                actions: ["noteHost", "setRestoreError", "clearBlocked"],
              },
              {
                guard: "giveUp",
                target: "#connection.failed",
                actions: ["noteHost", "giveUpError", "clearBlocked"],
              },
              // A restore that failed (e.g. the connection dropped meanwhile) is a lost connection,
              // bounded by the same restart intensity as LOST.
              {
                guard: "degrade",
                target: "#connection.degraded",
                actions: [
                  "noteHost",
                  "setRestoreError",
                  "escalate",
                  "countRestart",
                  "trouble",
                  "clearBlocked",
                  "leaveHost",
                ],
              },
              {
                target: "#connection.recovering",
                actions: [
                  "noteHost",
                  "setRestoreError",
                  "countRestart",
                  "trouble",
                  "clearBlocked",
                  "leaveHost",
                ],
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
          { guard: "fatal", target: "failed", actions: ["noteHost", "setError", "clearBlocked"] },
          { guard: "giveUp", target: "failed", actions: ["noteHost", "giveUpError", "clearBlocked"] },
          {
            guard: "degrade",
            target: "degraded",
            actions: [
              "noteHost",
              "setError",
              "escalate",
              "countRestart",
              "trouble",
              "clearBlocked",
              "leaveHost",
            ],
          },
          {
            target: "recovering",
            actions: ["noteHost", "setError", "countRestart", "trouble", "clearBlocked", "leaveHost"],
          },
        ],
        // A supervised channel gave up: the connection restarts, on the same host if it is the only one.
        ESCALATE: [
          { guard: "giveUp", target: "failed", actions: ["noteHost", "giveUpError", "clearBlocked"] },
          {
            guard: "degrade",
            target: "degraded",
            actions: ["noteHost", "setError", "escalate", "countRestart", "trouble", "clearBlocked"],
          },
          {
            target: "recovering",
            actions: ["noteHost", "setError", "countRestart", "trouble", "clearBlocked"],
          },
        ],
        CLOSE: "closing",
      },
    },
    recovering: {
      after: { backoff: "opening" },
      on: { CLOSE: "closing" },
    },
    /** Waiting, as recovering, but with the escalated backoff: restarts came faster than the intensity allows. */
    degraded: {
      after: { escalated: "opening" },
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
