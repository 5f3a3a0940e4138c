/**
 * Readiness (GET /readyz), decided from the client's state and its consumers' (pure): ready when
 * the client is running, not degraded, and every consumer consumes. Otherwise the reasons, one per
 * line of trouble, for a person reading the probe's output.
 */
import type { ConsumerState } from "../client/consumer-types.js";
import type { ClientState } from "../observability/observers.js";
import type { Readiness } from "./types.js";

export interface ReadinessInput {
  state: ClientState;
  degraded: boolean;
  /** Why the broker blocks the connection, or null. */
  blocked: string | null;
  consumers: readonly { queue: string; state: ConsumerState; lastSubscribeError: string | null }[];
}

export function readiness(input: ReadinessInput): Readiness {
  const reasons: string[] = [];
  if (input.state === "blocked")
    reasons.push(`the broker blocks the connection: ${input.blocked ?? "no reason given"}`);
  else if (input.state !== "running") reasons.push(`the client is ${input.state}`);
  if (input.degraded) reasons.push("the client is degraded: recoveries exceeded the restart intensity");
  for (const c of input.consumers) {
    if (c.state === "consuming") continue;
    const last = c.lastSubscribeError !== null ? ` (last error: ${c.lastSubscribeError})` : "";
    reasons.push(`the consumer of ${c.queue} is ${c.state}${last}`);
  }
  return { ready: reasons.length === 0, state: input.state, reasons };
}
