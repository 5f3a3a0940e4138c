/**
 * One timer for many deadlines. An RPC client with a thousand calls in flight would otherwise
 * create and clear a timer per call (measured: timers were the largest cost of a call after the
 * publish itself). The timer is armed for the earliest deadline only; when it fires, everything
 * due expires and it is armed again for the next. Calls made with the same timeout are added in
 * deadline order, so adding one touches no timer. Once nothing is left the timer is not cleared
 * but unref'd (it no longer holds the process open): calls one after the other would otherwise
 * create and clear a timer each; the next call, due later, finds it armed and only refs it again.
 */

/** setTimeout's largest delay (2^31 - 1 ms). */
const MAX_DELAY = 2_147_483_647;

/** Something that may expire. */
export interface Expiring {
  /** When it expires, on the `now` clock (ms). */
  readonly deadline: number;
}

export class Deadlines<T extends Expiring> {
  private readonly items = new Set<T>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Number.POSITIVE_INFINITY;
  /** The timer is armed but unref'd: nothing is waiting for it. */
  private idle = false;

  constructor(
    private readonly expire: (item: T) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.items.size;
  }

  add(item: T): void {
    this.items.add(item);
    if (item.deadline < this.armedFor) this.arm(item.deadline);
    else if (this.idle) {
      this.idle = false;
      this.timer?.ref();
    }
  }

  /**
   * Forgets `item` (settled in time). The timer stays armed until it fires; once nothing is left it
   * no longer holds the process open.
   */
  delete(item: T): void {
    if (!this.items.delete(item) || this.items.size > 0) return;
    this.idle = true;
    this.timer?.unref();
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.idle = false;
    this.armedFor = at;
    // Not unref'd: like a timer per call, an outstanding call keeps the process alive until it settles.
    // At most setTimeout's limit (about 24.8 days; past it Node fires at once): a later deadline re-arms.
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_DELAY, Math.max(0, at - this.now())));
  }

  private fire(): void {
    this.timer = undefined;
    this.idle = false;
    this.armedFor = Number.POSITIVE_INFINITY;
    const now = this.now();
    const due: T[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const item of this.items) {
      if (item.deadline <= now) due.push(item);
      else if (item.deadline < next) next = item.deadline;
    }
    for (const item of due) this.items.delete(item);
    if (next < this.armedFor) this.arm(next);
    // After re-arming: what expire() does (new calls, settled ones) finds the timer consistent.
    for (const item of due) this.expire(item);
  }
}
