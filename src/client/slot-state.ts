/**
 * The rules of a client's connections (pure, unit-tested alone): which connection each kind of
 * work uses, what each connection is called, and the client's one state made of theirs.
 *
 * RabbitMQ blocks a connection that publishes during a memory or disk alarm; consumers sharing it
 * would stop acking, and the queues whose draining relieves the alarm would stop draining. So by
 * default (`connections: "separate"`) consumers use one connection and publishers another.
 */
import type { ClientState } from "../observability/observers.js";

/** `connect({ connections })`: one connection per role (default), or one for everything. */
export type ConnectionsMode = "separate" | "single";

/**
 * What a connection carries: `consume` (consumers, RPC servers' requests, the topology),
 * `publish` (publishers, RPC clients, RPC servers' replies), or `shared` (everything, with
 * `connections: "single"`).
 */
export type ConnectionRole = "consume" | "publish" | "shared";

/** The kinds of work a client puts on a connection. */
export type WorkKind = "consume" | "publish";

/** The role of the connection that carries `kind` of work. */
export function roleFor(kind: WorkKind, mode: ConnectionsMode): ConnectionRole {
  return mode === "single" ? "shared" : kind;
}

/** The connection_name a role's connection gives the broker: `<name>:consume`, `<name>:publish`, or `<name>`. */
export function slotName(connectionName: string | undefined, role: ConnectionRole): string | undefined {
  if (role === "shared") return connectionName;
  return `${connectionName ?? "warren"}:${role}`;
}

/**
 * The states, best first. The client's state is the worst of its connections': a client is
 * `running` only when every connection it opened runs; `blocked` when one is blocked (publishing
 * waits) and none is worse; `closing` until the last one closed; `failed` once one failed (a
 * permanent fault fails the client, and it closes the others). `idle` (a connection made but not
 * yet started, on the next microtask) is the best, so it never hides the others.
 */
const RANK: readonly ClientState[] = [
  "idle",
  "running",
  "blocked",
  "restoring",
  "handshaking",
  "connecting",
  "recovering",
  "degraded",
  "closed",
  "closing",
  "failed",
];

/** The client's state from its connections' (`idle` with none). */
export function aggregateState(states: Iterable<ClientState>): ClientState {
  let worst = 0;
  for (const s of states) worst = Math.max(worst, RANK.indexOf(s));
  return RANK[worst] as ClientState;
}
