/**
 * Pipelined sending with a bound on what is outstanding: the pattern every
 * client module uses for confirmed publishes, and for the clients whose only
 * backpressure signal is a promise per publish.
 */

/**
 * For clients whose only backpressure signal is a promise per publish that resolves once
 * it is written (rabbitmq-client, @cloudamqp/amqp-client): how many may be unresolved
 * when publishing without confirms. In a trial of 10, 30, 100, 300 and 1000 their CPU per
 * message was flat from 10 to 300 and about 20% higher at 1000, and throughput was within
 * the noise; 100 keeps them at their cheapest without starving the socket.
 * BENCH_WRITE_WINDOW overrides it.
 */
export const WRITE_WINDOW = Number(process.env["BENCH_WRITE_WINDOW"] ?? 100);

/**
 * Starts one send. Call `done` when it completes (confirmed, or written), or `fail`.
 * Return false when the client asks the caller to stop until it drains; `resume` must
 * then be called from the client's drain signal.
 */
export type SendOne = (done: () => void, fail: (e: unknown) => void) => boolean;

/**
 * Runs `count` sends with at most `maxInFlight` not yet done. `waitDrain` registers a
 * one-shot callback for the client's drain signal (only used when `send` returns false).
 */
export function pump(
  count: number,
  maxInFlight: number,
  send: SendOne,
  waitDrain?: (resume: () => void) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let started = 0;
    let finished = 0;
    let paused = false;
    let failed = false;
    let running = false;
    const fail = (e: unknown): void => {
      if (failed) return;
      failed = true;
      reject(e);
    };
    const done = (): void => {
      finished++;
      if (finished === count) resolve();
      else if (!running && !paused) fill();
    };
    const resume = (): void => {
      paused = false;
      fill();
    };
    const fill = (): void => {
      running = true;
      try {
        while (!failed && !paused && started < count && started - finished < maxInFlight) {
          started++;
          if (!send(done, fail) && started < count) {
            paused = true;
            if (!waitDrain) throw new Error("send signalled backpressure but no drain hook was given");
            waitDrain(resume);
          }
        }
      } catch (e) {
        fail(e);
      } finally {
        running = false;
      }
    };
    if (count === 0) resolve();
    else fill();
  });
}

/** Rejects with a clear message if `p` does not settle within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * `count` sends split as evenly as can be over `senders`, one pump each (at most `maxInFlight`
 * outstanding per sender), all at once; resolves once every send is done. `send(s)` and
 * `waitDrain(s)` give a sender's SendOne and drain hook.
 */
export function pumpShared<T>(
  count: number,
  senders: readonly T[],
  maxInFlight: number,
  send: (s: T) => SendOne,
  waitDrain?: (s: T) => (resume: () => void) => void,
): Promise<unknown> {
  return Promise.all(
    shares(count, senders.length).map((n, i) => {
      const s = senders[i]!;
      return pump(n, maxInFlight, send(s), waitDrain?.(s));
    }),
  );
}

/** `count` split into `n` shares as even as can be (the first ones one larger). */
function shares(count: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(count / n) + (i < count % n ? 1 : 0));
}
