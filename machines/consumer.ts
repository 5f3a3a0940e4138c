/**
 * A consumer:
 *
 *   waiting ─CONNECTED→ subscribing ─(done)→ consuming ─CANCEL→ draining → cancelled
 *   consuming ─SERVER_CANCEL (queue deleted, node down)→ resubscribing (backoff) → subscribing
 *   consuming ─CHANNEL_CLOSED→ resubscribing;  any ─CONNECTION_LOST→ waiting
 *   subscribing ─(error)→ resubscribing, or failed when not recoverable
 *
 * Its channel is part of its lifecycle: `subscribe` opens a channel, sets qos,
 * re-declares the queue when the client declared it, and sends basic.consume;
 * `drain` cancels and waits for in-flight handlers. Both are provided by the client.
 */
import { assign, fromPromise, setup } from "xstate";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import type { LifecycleError } from "./connection.js";

/** Consumers retry for as long as it takes, up to 30 s apart by default. */
export const CONSUMER_BACKOFF: BackoffOptions = { initial: 100, max: 30_000, multiplier: 2 };

export interface ConsumerMachineInput {
  backoff?: BackoffOptions;
  random?: () => number;
  connected?: boolean;
}

export interface ConsumerContext {
  attempt: number;
  error: LifecycleError | undefined;
  backoff: BackoffOptions;
  random: () => number;
  connected: boolean;
}

export type ConsumerEvent =
  | { type: "CONNECTED" }
  | { type: "CONNECTION_LOST" }
  | { type: "SERVER_CANCEL" }
  | { type: "CHANNEL_CLOSED"; error: LifecycleError }
  | { type: "CANCEL" };

export const consumerMachine = setup({
  types: {
    context: {} as ConsumerContext,
    events: {} as ConsumerEvent,
    input: {} as ConsumerMachineInput,
  },
  actors: {
    subscribe: fromPromise<void>(async () => undefined),
    drain: fromPromise<void>(async () => undefined),
  },
  guards: {
    connected: ({ context }) => context.connected,
    fatal: ({ event }) => (event as { error?: LifecycleError }).error?.recoverable === false,
  },
  actions: {
    markConnected: assign({ connected: true }),
    markDisconnected: assign({ connected: false, attempt: 0 }),
    subscribed: assign({ attempt: 0, error: undefined }),
    retry: assign({
      attempt: ({ context }) => context.attempt + 1,
      error: ({ event }) => (event as { error?: LifecycleError }).error,
    }),
    setError: assign({ error: ({ event }) => (event as { error?: LifecycleError }).error }),
  },
  delays: {
    backoff: ({ context }) => backoffDelay(Math.max(0, context.attempt - 1), context.backoff, context.random),
  },
}).createMachine({
  id: "consumer",
  context: ({ input }) => ({
    attempt: 0,
    error: undefined,
    backoff: input.backoff ?? CONSUMER_BACKOFF,
    random: input.random ?? Math.random,
    connected: input.connected ?? false,
  }),
  initial: "waiting",
  states: {
    waiting: {
      always: { guard: "connected", target: "subscribing" },
      on: {
        CONNECTED: { target: "subscribing", actions: "markConnected" },
        CANCEL: "cancelled",
      },
    },
    subscribing: {
      invoke: {
        src: "subscribe",
        onDone: { target: "consuming", actions: "subscribed" },
        onError: [
          { guard: "fatal", target: "failed", actions: "setError" },
          { target: "resubscribing", actions: "retry" },
        ],
      },
      on: { CANCEL: "draining" },
    },
    consuming: {
      on: {
        SERVER_CANCEL: { target: "resubscribing", actions: "retry" },
        CHANNEL_CLOSED: { target: "resubscribing", actions: "retry" },
        CANCEL: "draining",
      },
    },
    resubscribing: {
      after: { backoff: "subscribing" },
      on: { CANCEL: "cancelled" },
    },
    draining: {
      invoke: { src: "drain", onDone: "cancelled", onError: "cancelled" },
      on: { CONNECTION_LOST: "cancelled" },
    },
    failed: {
      on: { CANCEL: "cancelled" },
    },
    cancelled: { type: "final" },
  },
  on: {
    CONNECTION_LOST: { target: ".waiting", actions: "markDisconnected" },
  },
});

export type ConsumerMachine = typeof consumerMachine;
