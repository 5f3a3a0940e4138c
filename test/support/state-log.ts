/** Recorders for the supervised client's tests: state changes and consumed messages, with times. */
import type { ConsumedMessage } from "../../src/index.js";
import { waitFor } from "./wait.js";

export interface Change {
  from: string;
  to: string;
  error: Error | undefined;
  at: number;
}

interface StateSource {
  on(event: "state", fn: (c: { from: string; to: string; error: Error | undefined }) => void): unknown;
}

/** Every state change of a client or consumer, with its time (performance.now()). */
export class StateLog {
  readonly changes: Change[] = [];
  constructor(source: StateSource) {
    source.on("state", (c) => this.changes.push({ ...c, at: performance.now() }));
  }
  get states(): string[] {
    return this.changes.map((c) => c.to);
  }
  statesSince(mark: number): string[] {
    return this.states.slice(mark);
  }
  count(to: string, since = 0): number {
    return this.changes.slice(since).filter((c) => c.to === to).length;
  }
  /** The first change to `to` at index `since` or later, waiting for it. */
  async next(to: string, since: number, timeoutMs = 10_000): Promise<Change> {
    const find = () => this.changes.slice(since).find((c) => c.to === to);
    await waitFor(() => find() !== undefined, `state ${to}`, timeoutMs);
    return find() as Change;
  }
}

/** A handler that records what it consumed (and when). */
export class Inbox {
  readonly messages: { body: string; redelivered: boolean; at: number }[] = [];
  readonly handler = (m: ConsumedMessage): void => {
    this.messages.push({ body: m.body.toString(), redelivered: m.fields.redelivered, at: performance.now() });
  };
  bodies(): string[] {
    return this.messages.map((m) => m.body);
  }
  async got(body: string, timeoutMs = 10_000): Promise<{ at: number }> {
    await waitFor(() => this.bodies().includes(body), `message "${body}"`, timeoutMs);
    return this.messages.find((m) => m.body === body) as { at: number };
  }
}
