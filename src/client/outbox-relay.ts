/**
 * The outbox relay: sends the rows a durable outbox holds, in id order, at most `maxInFlight`
 * unconfirmed, on the publisher's supervised channel; deletes each on its confirm. A nacked row is
 * sent again after its backoff (the publisher's NackRetry policy) and dead-lettered in the outbox
 * when its retries are used up; an unroutable row, or one the broker refused (no such exchange),
 * is dead-lettered at once. A row whose channel died before the confirm is read again: rows stay
 * until confirmed, across restarts of the process.
 */
import type { Channel } from "../amqp/channel.js";
import type { ConfirmSink, PublishOptions } from "../amqp/channel-types.js";
import { ChannelClosedByBroker, PublishNackedError, UnroutableError } from "../errors.js";
import { refusedPublishTo } from "../faults.js";
import type { PublisherObserver } from "../observability/observers.js";
import type { Outbox, StoredMessage } from "../outbox/outbox.js";
import type { NackCount, NackRetry } from "./nack-retry.js";

/** What the relay needs from its publisher. */
export interface RelayHost {
  /** The publisher's supervised channel, waiting (bounded) while it is reopened. */
  channel(timeout: number): Promise<Channel>;
  /** True while the broker blocks the connection. */
  readonly blocked: boolean;
  readonly observer?: PublisherObserver | undefined;
}

const MANDATORY: PublishOptions = { mandatory: true };
const PLAIN: PublishOptions = { mandatory: false };

/** A row sent: the sink the channel settles on the broker's answer (no promise, no closures). */
class Sent implements ConfirmSink {
  constructor(
    private readonly relay: OutboxRelay,
    private readonly ch: Channel,
    private readonly row: StoredMessage,
  ) {}

  resolve(): void {
    this.relay.ackedRow(this.ch, this.row);
  }

  reject(e: Error): void {
    this.relay.failedRow(this.ch, this.row, e);
  }
}

/** A nacked row waiting for its backoff. */
type RetryRow = StoredMessage & { due: number };

/** How long the relay waits to read the outbox again after a storage fault (it was reported). */
const FAULT_PAUSE_MS = 250;
/** The shortest wait for a nacked row: while blocked or reconnecting, passes end early and re-arm it. */
const MIN_RETRY_WAIT_MS = 25;

export class OutboxRelay {
  private cursor = 0;
  /** Rows sent and not yet settled, and nacked rows waiting for their backoff. */
  private readonly inFlight = new Set<number>();
  private scheduled = false;
  private running = false;
  private again = false;
  private readonly nacks = new Map<number, NackCount>();
  private retryRows: RetryRow[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private faultTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Rows the broker confirmed, and nacks of rows (each one), since the start (Publisher.totals). */
  confirmed = 0;
  nacked = 0;

  constructor(
    private readonly outbox: Outbox,
    private readonly host: RelayHost,
    private readonly nackRetry: NackRetry,
    private readonly o: {
      maxInFlight: number;
      /** How long a pass waits for a channel (ms). */
      timeout: number;
      /** A row was settled (confirmed, dead-lettered, or to be read again). */
      settled(): void;
    },
  ) {}

  /** Rows sent and not yet settled (nacked ones waiting for their backoff included). */
  get unsettled(): number {
    return this.inFlight.size;
  }

  /** Runs a pass soon (coalesced). */
  schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.relay();
    });
  }

  /** Stops: timers cleared; rows in flight stay stored for the next run. */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.faultTimer) clearTimeout(this.faultTimer);
    this.faultTimer = undefined;
  }

  /** One pass at a time; a pass asked for meanwhile runs after it. */
  private async relay(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      await this.pass();
    } finally {
      this.running = false;
      this.armRetry();
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }
  }

  private async pass(): Promise<void> {
    if (this.closed) return;
    const hasDue = this.retryRows.some((r) => r.due <= Date.now());
    if (!hasDue && this.o.maxInFlight - this.inFlight.size <= 0) return;
    let ch: Channel;
    try {
      ch = await this.host.channel(this.o.timeout);
    } catch {
      return; // the next "running" state change schedules the relay again
    }
    if (this.host.blocked || this.closed) return;
    // Nacked rows whose backoff passed go first (they are still counted in inFlight).
    const now = Date.now();
    const waiting: RetryRow[] = [];
    for (const row of this.retryRows) {
      if (row.due > now || !ch.isOpen) {
        waiting.push(row);
        continue;
      }
      this.inFlight.delete(row.id);
      this.send(ch, row);
    }
    this.retryRows = waiting;
    this.armRetry();
    const room = this.o.maxInFlight - this.inFlight.size;
    if (room <= 0) return;
    let rows: StoredMessage[];
    try {
      rows = this.outbox.pending(this.cursor, room);
    } catch {
      // The outbox could not be read (it reported why): try again shortly.
      this.faultTimer ??= setTimeout(() => {
        this.faultTimer = undefined;
        this.schedule();
      }, FAULT_PAUSE_MS);
      return;
    }
    for (const row of rows) {
      if (!ch.isOpen) break;
      this.cursor = row.id;
      if (this.inFlight.has(row.id)) continue; // sent again already, or waiting for its nack backoff
      this.send(ch, row);
    }
    if (rows.length === room) this.schedule();
  }

  private send(ch: Channel, row: StoredMessage): void {
    const sent = new Sent(this, ch, row);
    this.inFlight.add(row.id);
    try {
      ch.publishTo(
        row.exchange,
        row.routingKey,
        row.body,
        row.properties,
        row.mandatory ? MANDATORY : PLAIN,
        sent,
      );
    } catch (e) {
      // As a rejected publish: settled after this pass, not within it.
      queueMicrotask(() => sent.reject(e as Error));
    }
  }

  /** The broker confirmed a row: delete it. */
  ackedRow(ch: Channel, row: StoredMessage): void {
    this.confirmed++;
    this.host.observer?.exchange(row.exchange).confirmed();
    this.inFlight.delete(row.id);
    this.nackRetry.acked(ch);
    if (this.nacks.size > 0) this.nacks.delete(row.id);
    // After close() the outbox is closed: the row stays for the next run.
    if (this.closed) return;
    this.outbox.confirmed(row.id);
    this.o.settled();
  }

  /** A row was nacked, returned, refused, or its channel closed before the confirm. */
  failedRow(ch: Channel, row: StoredMessage, err: Error): void {
    const o = this.outbox;
    const stats = this.host.observer?.exchange(row.exchange);
    if (err instanceof PublishNackedError) {
      this.nacked++;
      stats?.nacked();
    } else if (err instanceof UnroutableError) stats?.returned();
    if (err instanceof PublishNackedError && !this.closed && this.retry(ch, row)) return;
    this.inFlight.delete(row.id);
    if (this.closed) return;
    if (err instanceof PublishNackedError) {
      const n = this.nacks.get(row.id)?.nacks ?? 1;
      this.nacks.delete(row.id);
      o.deadLetter(row.id, `${err.name}: ${err.message}${n > 1 ? ` (nacked ${n} times)` : ""}`);
    } else if (err instanceof UnroutableError) {
      o.deadLetter(row.id, `${err.name}: ${err.message}`);
    } else if (err instanceof ChannelClosedByBroker && refusedPublishTo(err, row.exchange)) {
      o.deadLetter(row.id, `${err.name}: ${err.message}`);
    } else if (row.id <= this.cursor) {
      // Not confirmed because the channel died: read it again (rows stay until confirmed).
      this.cursor = Math.min(this.cursor, row.id - 1);
    }
    this.o.settled();
  }

  /** A nacked row: sent again after its backoff unless its retries are used up (then it is dead-lettered). */
  private retry(ch: Channel, row: StoredMessage): boolean {
    const now = Date.now();
    let count = this.nacks.get(row.id);
    if (count === undefined) {
      count = { nacks: 0, firstNackAt: now };
      this.nacks.set(row.id, count);
    }
    const delay = this.nackRetry.nacked(ch, count, now);
    if (delay === undefined) return false;
    this.host.observer?.exchange(row.exchange).nackRetried();
    this.retryRows.push({ ...row, due: now + delay });
    this.armRetry();
    return true;
  }

  /** One timer for the earliest nacked row's backoff; re-armed by every pass that leaves rows waiting. */
  private armRetry(): void {
    if (this.retryTimer !== undefined || this.retryRows.length === 0 || this.closed) return;
    let due = Number.POSITIVE_INFINITY;
    for (const r of this.retryRows) due = Math.min(due, r.due);
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        this.schedule();
      },
      Math.max(MIN_RETRY_WAIT_MS, Math.ceil(due - Date.now()) + 1),
    );
  }
}
