/**
 * A consumer:
 *
 *   waiting ─CONNECTED→ subscribing ─(done)→ consuming ─CANCEL→ draining → cancelled
 *   consuming ─SERVER_CANCEL (queue deleted, node down)→ resubscribing (backoff) → subscribing
 *   consuming ─CHANNEL_CLOSED→ resubscribing;  any but failed ─CONNECTION_LOST→ waiting
 *   subscribing ─(error)→ resubscribing (a transient fault: reported when the fault table says so,
 *                         e.g. a missing queue), or failed (a permanent one, or the broker refusing
 *                         the subscription: 403, 406), reported
 *
 * Its channel is part of its lifecycle: `subscribe` opens a channel, sets qos,
 * re-declares the queue when the client declared it, and sends basic.consume;
 * `drain` cancels and waits for in-flight handlers. Both are provided by the client, as is
 * `report`, which tells the application (the client's rate-limited `error` event).
 *
 * `failed` stays failed through reconnections: retrying could not help (see src/faults.ts); only
 * CANCEL (consumer.cancel(), client.close()) ends it.
 */
import { assign, fromPromise, setup } from "xstate";
import { isPermanent, isRefusal, isReported } from "../src/faults.js";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import type { LifecycleError } from "./connection.js";

/**
 * Consumers retry for as long as it takes, at most 5 s apart. The cap is short on purpose: what a
 * consumer waits for is usually outside the client (a queue another service has yet to declare, a
 * queue's node coming back), so it should start within seconds of that; an attempt is cheap (a
 * channel and a basic.consume on a connection that is up), and the connection's own backoff, not
 * this one, is what spares a broker that is down.
 */
export const CONSUMER_BACKOFF: BackoffOptions = { initial: 100, max: 5_000, multiplier: 2 };

export interface ConsumerMachineInput {
  backoff?: BackoffOptions;
  random?: () => number;
  connected?: boolean;
}

export interface ConsumerContext {
  attempt: number;
  /** The error that caused the current state (resubscribing, failed), else undefined. */
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

const errorOf = (event: unknown): LifecycleError | undefined => (event as { error?: LifecycleError }).error;

/** The `report` action's params: the error the application is told of. */
const reportParams = ({ event }: { event: unknown }) => ({ error: errorOf(event) });

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
    /** Retrying the subscription cannot help: a permanent fault, or the broker refused it (403, 406). */
    permanent: ({ event }) => isPermanent(errorOf(event)) || isRefusal(errorOf(event)),
    /** Transient, but the application must hear of it (a missing queue, a locked one). */
    reported: ({ event }) => isReported(errorOf(event)),
  },
  actions: {
    markConnected: assign({ connected: true }),
    markDisconnected: assign({ connected: false, attempt: 0, error: undefined }),
    markOffline: assign({ connected: false }),
    subscribed: assign({ attempt: 0, error: undefined }),
    retry: assign({
      attempt: ({ context }) => context.attempt + 1,
      error: ({ event }) => errorOf(event),
    }),
    setError: assign({ error: ({ event }) => errorOf(event) }),
    clearError: assign({ error: undefined }),
    /** Tells the application of `error` (provided by the client: its rate-limited `error` event). */
    report: (_, _params: { error: LifecycleError | undefined }) => undefined,
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
          {
            guard: "permanent",
            target: "failed",
            actions: ["setError", { type: "report", params: reportParams }],
          },
          {
            guard: "reported",
            target: "resubscribing",
            actions: ["retry", { type: "report", params: reportParams }],
          },
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
      after: { backoff: { target: "subscribing", actions: "clearError" } },
      on: { CANCEL: "cancelled" },
    },
    draining: {
      invoke: { src: "drain", onDone: "cancelled", onError: "cancelled" },
      on: { CONNECTION_LOST: "cancelled" },
    },
    failed: {
      // Handled here, so the machine-wide CONNECTION_LOST (→ waiting) does not restart it.
      on: { CANCEL: "cancelled", CONNECTION_LOST: { actions: "markOffline" } },
    },
    cancelled: { type: "final" },
  },
  on: {
    CONNECTION_LOST: { target: ".waiting", actions: "markDisconnected" },
  },
});

export type ConsumerMachine = typeof consumerMachine;
