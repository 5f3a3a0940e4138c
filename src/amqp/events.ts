/** A small typed event emitter: listeners are called synchronously; a listener that throws never breaks the emitter. */
// biome-ignore lint/suspicious/noExplicitAny: listener argument tuples are checked at the call sites
type Listener = (...args: any[]) => void;

export class TypedEmitter<Events extends { [K in keyof Events]: Listener }> {
  private listeners = new Map<keyof Events, Listener[]>();

  on<K extends keyof Events>(event: K, fn: Events[K]): this {
    const l = this.listeners.get(event);
    if (l) l.push(fn as Listener);
    else this.listeners.set(event, [fn as Listener]);
    return this;
  }

  once<K extends keyof Events>(event: K, fn: Events[K]): this {
    const wrapped = ((...args: unknown[]) => {
      this.off(event, wrapped as unknown as Events[K]);
      (fn as Listener)(...args);
    }) as unknown as Events[K];
    return this.on(event, wrapped);
  }

  off<K extends keyof Events>(event: K, fn: Events[K]): this {
    const l = this.listeners.get(event);
    if (l) {
      const i = l.indexOf(fn as Listener);
      if (i >= 0) l.splice(i, 1);
    }
    return this;
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.length ?? 0;
  }

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
