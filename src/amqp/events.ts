/** A small typed event emitter: listeners are called synchronously; a listener that throws never breaks the emitter. */
// biome-ignore lint/suspicious/noExplicitAny: listener argument tuples are checked at the call sites
type Listener = (...args: any[]) => void;

/**
 * The base of every warren object that emits events (Connection, Channel, Client, Consumer,
 * RpcClient, RpcServer). Unlike Node's EventEmitter, an `error` event with no listener never
 * throws: the fault shows in another way too (a state, a rejected promise, a process warning).
 */
export class TypedEmitter<Events extends { [K in keyof Events]: Listener }> {
  private listeners = new Map<keyof Events, Listener[]>();

  /** Calls `fn` on every `event`, after the listeners added before it. Returns this, for chaining. */
  on<K extends keyof Events>(event: K, fn: Events[K]): this {
    const l = this.listeners.get(event);
    if (l) l.push(fn as Listener);
    else this.listeners.set(event, [fn as Listener]);
    return this;
  }

  /** Calls `fn` on the next `event` only, then removes it. Returns this. */
  once<K extends keyof Events>(event: K, fn: Events[K]): this {
    const wrapped = ((...args: unknown[]) => {
      this.off(event, wrapped as unknown as Events[K]);
      (fn as Listener)(...args);
    }) as unknown as Events[K];
    return this.on(event, wrapped);
  }

  /**
   * Removes a listener added with `on()` (one occurrence, if it was added twice). A listener added
   * with `once()` cannot be removed this way: it is wrapped. Returns this.
   */
  off<K extends keyof Events>(event: K, fn: Events[K]): this {
    const l = this.listeners.get(event);
    if (l) {
      const i = l.indexOf(fn as Listener);
      if (i >= 0) l.splice(i, 1);
    }
    return this;
  }

  /** How many listeners `event` has. */
  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.length ?? 0;
  }

  /**
   * Calls each listener of `event` in order; false when there was none. A listener that throws becomes a
   * process warning.
   */
  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): boolean {
    const l = this.listeners.get(event);
    if (!l || l.length === 0) return false;
    for (const fn of [...l]) {
      try {
        fn(...args);
      } catch (err) {
        process.emitWarning(
          `warren: a "${String(event)}" listener threw: ${(err as Error)?.message ?? String(err)}`,
        );
      }
    }
    return true;
  }
}
