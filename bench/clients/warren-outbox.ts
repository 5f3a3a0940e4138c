/**
 * warren's supervised client publishing through its durable outbox: publish() resolves once
 * the message is committed to SQLite (synchronous = FULL, group commit), and the relay sends
 * it with confirms, at most maxInFlight unconfirmed, deleting each row on its confirm. A
 * confirmed publish counts as done once every message is relayed and confirmed, i.e. once
 * `pub.stored` is 0.
 *
 * Only the confirm workload applies (CLIENT_WORKLOADS in types.ts); the outbox lives in a
 * fresh temporary directory of the worker process, removed again on close or exit.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Publisher } from "../../src/index.js";
import { WarrenClientClient } from "./warren-client.js";

/** How often the end of the relay is checked (pub.stored is a counter, not a query). */
const POLL_MS = 1;

export class WarrenOutboxClient extends WarrenClientClient {
  override readonly name = "warren-outbox";
  private readonly dir = mkdtempSync(join(tmpdir(), "warren-bench-outbox-"));
  private readonly outboxes = new Map<number, Publisher>();

  constructor() {
    super();
    process.once("exit", () => rmSync(this.dir, { recursive: true, force: true }));
  }

  override async publishConfirmed(
    queue: string,
    body: Buffer,
    count: number,
    maxInFlight: number,
  ): Promise<void> {
    let pub = this.outboxes.get(maxInFlight);
    if (!pub) {
      const path = join(this.dir, `outbox-${maxInFlight}.sqlite`);
      pub = this.client.publisher({ maxInFlight, outbox: { path, synchronous: "FULL" } });
      this.outboxes.set(maxInFlight, pub);
    }
    const all: Promise<void>[] = new Array(count);
    for (let i = 0; i < count; i++) all[i] = pub.publish({ exchange: "", routingKey: queue, body });
    await Promise.all(all);
    while (pub.stored > 0) await new Promise((r) => setTimeout(r, POLL_MS));
  }

  override publish(): Promise<void> {
    return Promise.reject(new Error("warren-outbox runs the confirm workload only"));
  }

  override consume(): Promise<void> {
    return Promise.reject(new Error("warren-outbox runs the confirm workload only"));
  }

  override async close(): Promise<void> {
    await super.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
