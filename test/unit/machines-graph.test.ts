/**
 * Walks every machine with @xstate/graph and proves every state is reached and every
 * transition taken.
 *
 * 1. The universe: every state node (`toDirectedGraph`, checked against `getStateNodes`)
 *    and every transition declared on it (its `on`, `after`, invoke `onDone`/`onError`
 *    and `always` transitions, one per guarded alternative).
 * 2. The graph: `getAdjacencyMap` / `getShortestPaths` explore the pure machine from its
 *    initial state, offering every event the current state handles (with recoverable and
 *    fatal errors where an event carries one, and the synthetic done/error/after events
 *    of invoked actors and delays).
 * 3. The replay: every edge of that graph (the shortest path to its source, then its
 *    event) is replayed on a real actor whose side effects are fakes settled on cue, with
 *    a SimulatedClock advanced for `after` delays. xstate's inspection stream reports each
 *    microstep's transitions; the snapshot after each step must match the pure graph's.
 *
 * A state never reached or a transition never taken fails the test. The coverage table is
 * printed with console.info.
 */
import {
  type AdjacencyMap,
  getAdjacencyMap,
  getShortestPaths,
  getStateNodes,
  toDirectedGraph,
} from "@xstate/graph";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AnyEventObject,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type AnyTransitionDefinition,
  createActor,
  type EventObject,
  fromCallback,
  fromPromise,
  getNextTransitions,
  type InspectionEvent,
  SimulatedClock,
  type StateValue,
  setup,
} from "xstate";
import { channelMachine } from "../../machines/channel.js";
import { type ConnectInput, type ConnectionEvent, connectionMachine } from "../../machines/connection.js";
import { consumerMachine } from "../../machines/consumer.js";
import {
  AuthenticationError,
  ChannelClosedByBroker,
  QueueNotFoundError,
  SocketError,
} from "../../src/errors.js";
import { nextTurn } from "../support/turn.js";

// ─── the universe: state nodes and declared transitions ─────────────────────

type AnyStateNode = AnyTransitionDefinition["source"];

/** The transitions a state node declares for `eventType` ("" for its `always` transitions). */
function declared(node: AnyStateNode, eventType: string): readonly AnyTransitionDefinition[] {
  return eventType === "" ? (node.always ?? []) : (node.transitions.get(eventType) ?? []);
}

function describeEvent(node: AnyStateNode, eventType: string): string {
  if (eventType === "") return "always";
  const actor = /^xstate\.(done|error)\.actor\.(.*)$/.exec(eventType);
  if (actor) {
    const invoke = node.invoke.find((i) => i.id === actor[2]);
    return `${actor[1]}(${typeof invoke?.src === "string" ? invoke.src : actor[2]})`;
  }
  const delayed = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (delayed) return `after(${delayed[1]})`;
  return eventType;
}

/** A transition's identity, equal across `.provide()` copies of the same machine. */
function transitionKey(t: AnyTransitionDefinition): string {
  const i = declared(t.source, t.eventType).indexOf(t);
  if (i < 0) throw new Error(`transition ${t.source.id} ${t.eventType} is not declared on its source`);
  const guard = t.guard
    ? ` [${typeof t.guard === "string" ? t.guard : ((t.guard as { type?: string }).type ?? "guard")}]`
    : "";
  const targets = t.target?.map((n) => n.id).join(",") ?? "(stays)";
  return `${t.source.id} —${describeEvent(t.source, t.eventType)}#${i}${guard}→ ${targets}`;
}

interface Universe {
  states: string[];
  transitions: string[];
}

function universe(machine: AnyStateMachine): Universe {
  const states: string[] = [];
  const transitions = new Set<string>();
  const walk = (g: ReturnType<typeof toDirectedGraph>) => {
    states.push(g.id);
    for (const e of g.edges) transitions.add(transitionKey(e.transition));
    // toDirectedGraph lists `on`, `after` and invoke transitions; `always` ones are kept apart.
    for (const t of g.stateNode.always ?? []) transitions.add(transitionKey(t));
    for (const c of g.children) walk(c);
  };
  walk(toDirectedGraph(machine));
  const nodes = [machine.root, ...getStateNodes(machine.root)].map((n) => n.id);
  expect([...states].sort()).toEqual([...nodes].sort());
  return { states, transitions: [...transitions] };
}

/** The ids of the state nodes active in `value` (the root included). */
function activeIds(rootId: string, value: StateValue): string[] {
  const out = [rootId];
  const walk = (prefix: string, v: StateValue) => {
    if (typeof v === "string") {
      out.push(`${prefix}.${v}`);
      return;
    }
    for (const [k, child] of Object.entries(v)) {
      out.push(`${prefix}.${k}`);
      if (child !== undefined) walk(`${prefix}.${k}`, child as StateValue);
    }
  };
  walk(rootId, value);
  return out;
}

// ─── fakes and the walk ─────────────────────────────────────────────────────

/** Promise actors that stay pending until the walk settles them by their invoke id. */
class Fakes {
  private readonly pending = new Map<string, { resolve: () => void; reject: (e: unknown) => void }>();

  promise() {
    return fromPromise<void>(
      ({ self, signal }) =>
        new Promise<void>((resolve, reject) => {
          this.pending.set(self.id, { resolve, reject });
          signal.addEventListener("abort", () => this.pending.delete(self.id));
        }),
    );
  }

  /** Callback actors whose events the walk sends to the machine directly. */
  callback<E extends EventObject, I = unknown>() {
    return fromCallback<E, I>(() => () => undefined);
  }

  settle(invokeId: string, error?: unknown): void {
    const p = this.pending.get(invokeId);
    if (!p) throw new Error(`the actor ${invokeId} is not running`);
    this.pending.delete(invokeId);
    if (error === undefined) p.resolve();
    else p.reject(error);
  }
}

const RECOVERABLE = new SocketError("recoverable");
const FATAL = new AuthenticationError("fatal");
const CHANNEL_ERROR = new ChannelClosedByBroker({
  replyCode: 404,
  replyText: "NOT_FOUND",
  classId: 50,
  methodId: 10,
});
/** Longer than any backoff in these machines. */
const AFTER_ANY_DELAY = 1_000_000;

interface WalkSpec {
  name: string;
  machine: AnyStateMachine;
  /** Inputs to walk from (without `now`, which the walk supplies). */
  inputs: Record<string, unknown>[];
  /** The machine with fake actors. */
  provide(f: Fakes): AnyStateMachine;
  /** The payloads to try for each external event type. */
  events: Record<string, AnyEventObject[]>;
  /** The errors an invoked actor fails with (default: one recoverable, one fatal). */
  actorErrors?: Error[];
  /**
   * What tells two snapshots apart for the walk: the state value and the context that
   * guards read (restart counts, blocked, connected), not what only shapes delays and inputs.
   */
  serialize(s: AnyMachineSnapshot): string;
}

function serializeEvent(e: AnyEventObject): string {
  const { type, error, ...rest } = e as AnyEventObject & { error?: { recoverable?: boolean; code?: string } };
  const err =
    error === undefined
      ? ""
      : `${error.recoverable === false ? " fatal" : " recoverable"}${error.code ? ` ${error.code}` : ""}`;
  return `${type}${err}${Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : ""}`;
}

/** Every event the snapshot's active states handle, in each variant worth trying. */
function eventsFor(spec: WalkSpec, s: AnyMachineSnapshot): AnyEventObject[] {
  if (s.status !== "active") return [];
  const types = new Set(getNextTransitions(s).map((t) => t.eventType));
  types.delete("");
  return [...types].flatMap((type): AnyEventObject[] => {
    if (type.startsWith("xstate.done.actor.")) return [{ type }];
    if (type.startsWith("xstate.error.actor.")) {
      return (spec.actorErrors ?? [RECOVERABLE, FATAL]).map((error) => ({ type, error }));
    }
    if (type.startsWith("xstate.after.")) return [{ type }];
    const variants = spec.events[type];
    if (!variants) throw new Error(`${spec.name}: no payloads for ${type}`);
    return variants;
  });
}

interface Coverage {
  states: Set<string>;
  transitions: Set<string>;
}

interface WalkResult {
  universe: Universe;
  covered: Coverage;
  missingStates: string[];
  missingTransitions: string[];
  graphStates: number;
  edges: number;
}

/** Plays `events` on a fresh actor, checking each snapshot against the pure graph's. */
async function replay(
  spec: WalkSpec,
  input: Record<string, unknown>,
  steps: { event: AnyEventObject; expected: string }[],
  coverage: Coverage,
): Promise<void> {
  const clock = new SimulatedClock();
  const fakes = new Fakes();
  const rootId = spec.machine.id;
  const record = (s: AnyMachineSnapshot) => {
    for (const id of activeIds(rootId, s.value)) coverage.states.add(id);
  };
  const inspect = (ev: InspectionEvent) => {
    if (ev.type !== "@xstate.microstep") return;
    for (const t of ev._transitions) {
      coverage.transitions.add(transitionKey(t));
      coverage.states.add(t.source.id); // active when it was taken, if only for a microstep
    }
    record(ev.snapshot as AnyMachineSnapshot);
  };
  const actor = createActor(spec.provide(fakes), {
    clock,
    inspect,
    input: { ...input, now: () => clock.now() },
  });
  actor.start();
  record(actor.getSnapshot());
  for (const { event, expected } of steps) {
    const type = event.type;
    const invoked = /^xstate\.(done|error)\.actor\.(.*)$/.exec(type);
    if (invoked) {
      fakes.settle(
        invoked[2]!,
        invoked[1] === "error" ? (event as unknown as { error: unknown }).error : undefined,
      );
      await nextTurn(); // the settled promise actor delivers its done/error event
    } else if (type.startsWith("xstate.after.")) {
      clock.increment(AFTER_ANY_DELAY);
    } else {
      actor.send(event);
    }
    const actual = spec.serialize(actor.getSnapshot());
    if (actual !== expected) {
      throw new Error(
        `${spec.name}: after ${steps.map((s) => serializeEvent(s.event)).join(" → ")}\n  actor: ${actual}\n  graph: ${expected}`,
      );
    }
  }
  actor.stop();
}

async function walk(spec: WalkSpec): Promise<WalkResult> {
  const u = universe(spec.machine);
  const covered: Coverage = { states: new Set(), transitions: new Set() };
  let graphStates = 0;
  let edges = 0;
  for (const input of spec.inputs) {
    const pureInput = { ...input, now: () => 0 };
    const options = {
      input: pureInput,
      events: (s: AnyMachineSnapshot) => eventsFor(spec, s),
      serializeState: (s: AnyMachineSnapshot) => spec.serialize(s),
      serializeEvent: (e: AnyEventObject) => serializeEvent(e),
      limit: 5000,
    };
    let adjacency: AdjacencyMap<AnyMachineSnapshot, AnyEventObject>;
    try {
      adjacency = getAdjacencyMap(spec.machine, options);
    } catch (e) {
      throw new Error(
        `${spec.name}: more than ${options.limit} graph states — some part of the context a guard reads grows without bound`,
        { cause: e },
      );
    }
    const paths = new Map(getShortestPaths(spec.machine, options).map((p) => [spec.serialize(p.state), p]));
    graphStates += Object.keys(adjacency).length;
    for (const [from, { transitions }] of Object.entries(adjacency)) {
      const path = paths.get(from);
      if (!path) throw new Error(`${spec.name}: no path to ${from}`);
      const head = path.steps
        .filter((s) => s.event.type !== "xstate.init")
        .map((s) => ({ event: s.event, expected: spec.serialize(s.state) }));
      const out = Object.values(transitions) as { event: AnyEventObject; state: AnyMachineSnapshot }[];
      for (const { event, state } of out) {
        edges++;
        await replay(spec, input, [...head, { event, expected: spec.serialize(state) }], covered);
      }
    }
  }
  return {
    universe: u,
    covered,
    missingStates: u.states.filter((s) => !covered.states.has(s)),
    missingTransitions: u.transitions.filter((t) => !covered.transitions.has(t)),
    graphStates,
    edges,
  };
}

// ─── the machines ───────────────────────────────────────────────────────────

const errorVariants = (type: string, recoverable: Error = RECOVERABLE) => [
  { type, error: recoverable },
  { type, error: FATAL },
];
const random = () => 0.5;
const intensity = { maxRestarts: 2, withinMs: 1e12 };

const specs: WalkSpec[] = [
  {
    name: "connection",
    machine: connectionMachine,
    // Without a limit (transient faults never end it) and with the caller's giveUpAfter.
    inputs: [
      { hostCount: 2, intensity, random },
      { hostCount: 2, intensity, random, giveUpAfter: { attempts: 4 } },
    ],
    provide: (f) =>
      connectionMachine.provide({
        actors: {
          connect: f.callback<ConnectionEvent, ConnectInput>(),
          restore: f.promise(),
          watch: f.callback<ConnectionEvent>(),
          shutdown: f.promise(),
        },
      }),
    events: {
      START: [{ type: "START" }],
      SOCKET_OPEN: [{ type: "SOCKET_OPEN" }],
      CONNECTED: [{ type: "CONNECTED" }],
      CONNECT_FAILED: errorVariants("CONNECT_FAILED"),
      LOST: errorVariants("LOST"),
      ESCALATE: errorVariants("ESCALATE"),
      BLOCKED: [{ type: "BLOCKED", reason: "memory alarm" }],
      UNBLOCKED: [{ type: "UNBLOCKED" }],
      CLOSE: [{ type: "CLOSE" }],
    },
    serialize: (s) => {
      const c = s.context as {
        restarts: number[];
        blockedReason?: string;
        degraded: boolean;
        level: number;
        troubles: number;
      };
      // What the guards read, capped where more of it changes no guard: restarts at the intensity,
      // troubles at giveUpAfter.attempts; the level only lengthens a delay.
      return JSON.stringify([
        s.value,
        s.status,
        Math.min(c.restarts.length, intensity.maxRestarts),
        c.blockedReason !== undefined,
        c.degraded,
        Math.min(c.level, 1),
        Math.min(c.troubles, 4),
      ]);
    },
  },
  {
    name: "channel",
    machine: channelMachine,
    inputs: [
      { connected: false, intensity, random },
      { connected: true, intensity, random },
    ],
    provide: (f) => channelMachine.provide({ actors: { open: f.promise(), close: f.promise() } }),
    events: {
      CONNECTED: [{ type: "CONNECTED" }],
      CONNECTION_LOST: [{ type: "CONNECTION_LOST" }],
      CHANNEL_CLOSED: errorVariants("CHANNEL_CLOSED", CHANNEL_ERROR),
      FLOW: [
        { type: "FLOW", active: false },
        { type: "FLOW", active: true },
      ],
      RENEW: [{ type: "RENEW" }],
      CLOSE: [{ type: "CLOSE" }],
    },
    serialize: (s) => {
      const c = s.context as { restarts: number[]; connected: boolean };
      return JSON.stringify([s.value, s.status, c.restarts.length, c.connected]);
    },
  },
  {
    name: "consumer",
    machine: consumerMachine,
    inputs: [
      { connected: false, random },
      { connected: true, random },
    ],
    provide: (f) => consumerMachine.provide({ actors: { subscribe: f.promise(), drain: f.promise() } }),
    // A subscription also fails with a missing queue (transient, reported) and a refusal (permanent).
    actorErrors: [
      RECOVERABLE,
      FATAL,
      new QueueNotFoundError("orders"),
      new ChannelClosedByBroker({ replyCode: 403, replyText: "ACCESS_REFUSED", classId: 60, methodId: 20 }),
    ],
    events: {
      CONNECTED: [{ type: "CONNECTED" }],
      CONNECTION_LOST: [{ type: "CONNECTION_LOST" }],
      SERVER_CANCEL: [{ type: "SERVER_CANCEL" }],
      CHANNEL_CLOSED: errorVariants("CHANNEL_CLOSED", CHANNEL_ERROR),
      CANCEL: [{ type: "CANCEL" }],
    },
    serialize: (s) => {
      const c = s.context as { connected: boolean };
      return JSON.stringify([s.value, s.status, c.connected]);
    },
  },
];

// ─── the tests ──────────────────────────────────────────────────────────────

const table: string[] = [];

afterAll(() => {
  if (table.length === 0) return;
  const header = "machine      states        transitions   graph states  edges replayed";
  console.info(["machine coverage (@xstate/graph walk, replayed on actors)", header, ...table].join("\n"));
});

describe("@xstate/graph walk: every state reached, every transition taken", () => {
  for (const spec of specs) {
    // CPU-bound (the connection walk takes 16–21 s alone on two cores): the bound is a hang guard
    // that holds with the rest of the suite running beside it, not a performance limit.
    it(spec.name, { timeout: 180_000 }, async () => {
      const r = await walk(spec);
      const cell = (n: number, total: number) => `${n}/${total}`.padEnd(14);
      table.push(
        spec.name.padEnd(13) +
          cell(r.universe.states.length - r.missingStates.length, r.universe.states.length) +
          cell(r.universe.transitions.length - r.missingTransitions.length, r.universe.transitions.length) +
          String(r.graphStates).padEnd(14) +
          String(r.edges),
      );
      expect(r.missingStates, `${spec.name}: states never reached`).toEqual([]);
      expect(r.missingTransitions, `${spec.name}: transitions never taken`).toEqual([]);
      expect(r.universe.transitions.length).toBeGreaterThan(5);
    });
  }

  it("reports an unreachable state and a transition whose guard never holds", async () => {
    const toy = setup({
      types: { events: {} as { type: "GO" } | { type: "BACK" } },
      guards: { never: () => false },
    }).createMachine({
      id: "toy",
      initial: "a",
      states: {
        a: { on: { GO: "b", BACK: { guard: "never", target: "c" } } },
        b: { on: { BACK: "a" } },
        c: {},
        island: { on: { GO: "a" } },
      },
    });
    const r = await walk({
      name: "toy",
      machine: toy,
      inputs: [{}],
      provide: () => toy,
      events: { GO: [{ type: "GO" }], BACK: [{ type: "BACK" }] },
      serialize: (s) => JSON.stringify(s.value),
    });
    expect(r.missingStates.sort()).toEqual(["toy.c", "toy.island"]);
    expect(r.missingTransitions.sort()).toEqual(["toy.a —BACK#0 [never]→ toy.c", "toy.island —GO#0→ toy.a"]);
    expect(r.universe.transitions).toHaveLength(4);
  });
});
