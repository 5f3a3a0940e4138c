/** Deliveries to a low-level channel consumer (basic.consume), for the channel and content tests. */
import type { Channel, Message } from "../../src/index.js";
import { deferred, within } from "./async.js";
import { waitFor } from "./wait.js";

/** Records deliveries; until(n) waits for the n-th. */
export class Deliveries {
  readonly got: Message[] = [];
  readonly onMessage = (m: Message): void => {
    this.got.push(m);
  };
  /** Resolves with everything received once at least n deliveries arrived (the timeout is a safety net). */
  async until(n: number, timeoutMs = 10_000): Promise<Message[]> {
    await waitFor(() => this.got.length >= n, `${n} deliveries`, timeoutMs);
    return this.got;
  }
  bodies(): string[] {
    return this.got.map((m) => m.body.toString());
  }
}

/**
 * Consumes `queue` on `ch` (noAck), runs `publish`, and resolves with the first delivery after
 * cancelling the consumer again.
 */
export async function deliveryOf(
  ch: Channel,
  queue: string,
  publish: () => Promise<unknown>,
  timeoutMs = 10_000,
): Promise<Message> {
  const first = deferred<Message>();
  const tag = await ch.basicConsume({ queue, noAck: true }, first.resolve);
  await publish();
  const m = await within(first.promise, timeoutMs, `a delivery from ${queue}`);
  await ch.basicCancel(tag);
  return m;
}
