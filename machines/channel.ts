/**
 * A supervised channel (publishing and management channels):
 *
 *   waiting ─CONNECTED→ opening ─(open done)→ open{flowing ⇄ paused}
 *   open ─CHANNEL_CLOSED→ reopening (backoff) ─after→ opening, or failed (escalate)
 *        when the restart intensity is exceeded or the error is not recoverable
 *   open ─RENEW→ reopening: the owner closed a channel that still works but misbehaves
 *        (e.g. the broker nacks every publish on it); not counted toward the intensity
 *   any ─CONNECTION_LOST→ waiting;  any ─CLOSE→ closing → closed
 *
 * Pure: opening (channel.open, qos, confirm.select) and closing are the named
 * actors `open` and `close`; the client provides them.
 */
import { assign, fromPromise, setup } from "xstate";
import {
  type BackoffOptions,
  backoffDelay,
  DEFAULT_BACKOFF,
  DEFAULT_INTENSITY,
  type IntensityOptions,
  intensityExceeded,
  recordRestart,
} from "./backoff.js";
import type { LifecycleError } from "./connection.js";

export interface ChannelMachineInput {
  backoff?: BackoffOptions;
  intensity?: IntensityOptions;
  now?: () => number;
  random?: () => number;
  /** Start in `opening` (the connection is already up). */
  connected?: boolean;
}

export interface ChannelContext {
  attempt: number;
  restarts: number[];
  error: LifecycleError | undefined;
  backoff: BackoffOptions;
  intensity: IntensityOptions;
  now: () => number;
  random: () => number;
  connected: boolean;
}

export type ChannelEvent =
  | { type: "CONNECTED" }
  | { type: "CONNECTION_LOST" }
  /**
   * `caller`: the broker closed the channel because of what the application asked (e.g. a publish
   * to a missing exchange): it is reopened, but it does not count toward the restart intensity.
   */
  | { type: "CHANNEL_CLOSED"; error: LifecycleError; caller?: boolean }
  | { type: "FLOW"; active: boolean }
  /** The owner closed the open channel to get a fresh one (not a failure). */
  | { type: "RENEW" }
  | { type: "CLOSE" };

export const channelMachine = setup({
  types: {
    context: {} as ChannelContext,
    events: {} as ChannelEvent,
    input: {} as ChannelMachineInput,
  },
  actors: {
    open: fromPromise<void>(async () => undefined),
    close: fromPromise<void>(async () => undefined),
  },
  guards: {
    connected: ({ context }) => context.connected,
    giveUp: ({ context, event }) =>
      event.type === "CHANNEL_CLOSED" &&
      (event.error.recoverable === false ||
        (!event.caller && intensityExceeded(context.restarts, context.now(), context.intensity))),
    openFailedFatal: ({ context, event }) =>
      (event as { error?: LifecycleError }).error?.recoverable === false ||
      intensityExceeded(context.restarts, context.now(), context.intensity),
  },
  actions: {
    markConnected: assign({ connected: true }),
    markDisconnected: assign({ connected: false, attempt: 0 }),
    opened: assign({ attempt: 0, error: undefined }),
    restart: assign({
      error: ({ event }) => (event as { error?: LifecycleError }).error,
      attempt: ({ context }) => context.attempt + 1,
      restarts: ({ context, event }) =>
        event.type === "CHANNEL_CLOSED" && event.caller
          ? context.restarts
          : recordRestart(context.restarts, context.now(), context.intensity),
    }),
    setError: assign({ error: ({ event }) => (event as { error?: LifecycleError }).error }),
    renewing: assign({ attempt: ({ context }) => context.attempt + 1 }),
  },
  delays: {
    backoff: ({ context }) => backoffDelay(Math.max(0, context.attempt - 1), context.backoff, context.random),
  },
}).createMachine({
  id: "channel",
  context: ({ input }) => ({
    attempt: 0,
    restarts: [],
    error: undefined,
    backoff: input.backoff ?? DEFAULT_BACKOFF,
    intensity: input.intensity ?? DEFAULT_INTENSITY,
    now: input.now ?? Date.now,
    random: input.random ?? Math.random,
    connected: input.connected ?? false,
  }),
  initial: "waiting",
  states: {
    waiting: {
      always: { guard: "connected", target: "opening" },
      on: { CONNECTED: { target: "opening", actions: "markConnected" } },
    },
    opening: {
      invoke: {
        src: "open",
        onDone: { target: "open", actions: "opened" },
        onError: [
          { guard: "openFailedFatal", target: "failed", actions: "setError" },
          { target: "reopening", actions: "restart" },
        ],
      },
    },
    open: {
      initial: "flowing",
      states: {
        flowing: { on: { FLOW: { guard: ({ event }) => !event.active, target: "paused" } } },
        paused: { on: { FLOW: { guard: ({ event }) => event.active, target: "flowing" } } },
      },
      on: {
        CHANNEL_CLOSED: [
          { guard: "giveUp", target: "failed", actions: "setError" },
          { target: "reopening", actions: "restart" },
        ],
        RENEW: { target: "reopening", actions: "renewing" },
      },
    },
    reopening: {
      after: { backoff: "opening" },
    },
    closing: {
      invoke: { src: "close", onDone: "closed", onError: "closed" },
      on: { CONNECTION_LOST: "closed", CLOSE: {} },
    },
    /** Gave up: the owner escalates to the connection's supervisor. */
    failed: {},
    closed: { type: "final" },
  },
  on: {
    CONNECTION_LOST: { target: ".waiting", actions: "markDisconnected" },
    CLOSE: ".closing",
  },
});

export type ChannelMachine = typeof channelMachine;
