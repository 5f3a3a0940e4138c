/**
 * Callers waiting for one condition (the client open, a channel reopened, a consumer subscribed):
 * settled together when it comes or fails, each optionally bounded by its own timeout.
 */
interface Waiter<T> {
  resolve(value: T): void;
  reject(e: Error): void;
}

export class Waiters<T = void> {
  private list: Waiter<T>[] = [];

  get size(): number {
    return this.list.length;
  }

  /**
   * Settled by the next resolveAll() or rejectAll(); with `timeoutMs`, rejected with
   * `onTimeout()` after that long (and forgotten) if neither came first.
   */
  wait(timeoutMs?: number, onTimeout?: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (timeoutMs === undefined) {
        this.list.push({ resolve, reject });
        return;
      }
      const waiter: Waiter<T> = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.list = this.list.filter((w) => w !== waiter);
        reject(onTimeout?.() ?? new Error(`not settled within ${timeoutMs} ms`));
      }, timeoutMs);
      this.list.push(waiter);
    });
  }

  resolveAll(value: T): void {
    const list = this.list;
    this.list = [];
    for (const w of list) w.resolve(value);
  }

  rejectAll(e: Error): void {
    const list = this.list;
    this.list = [];
    for (const w of list) w.reject(e);
  }
}
