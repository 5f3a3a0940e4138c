/**
 * The rpc workload's driver, shared by every client: `count` calls with at most `concurrency`
 * outstanding (1: strictly sequential), each call's round trip measured from just before the
 * request is handed to the client to its reply, in µs. A reply must carry the request's body
 * back (the bench server echoes it).
 */
export async function timedCalls(
  count: number,
  concurrency: number,
  body: Buffer,
  call: () => Promise<Uint8Array | Buffer>,
): Promise<number[]> {
  const latencies = new Array<number>(count);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const t0 = performance.now();
      const reply = await call();
      latencies[i] = (performance.now() - t0) * 1000;
      if (reply.byteLength !== body.byteLength) {
        throw new Error(`reply of ${reply.byteLength} bytes, not the ${body.byteLength} sent`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane));
  return latencies;
}

/** Correlation ids and the calls waiting for them, for the clients driven by hand. */
export class Correlator {
  private readonly waiting = new Map<string, (body: Uint8Array) => void>();
  private seq = 0;

  next(resolve: (body: Uint8Array) => void): string {
    const id = String(++this.seq);
    this.waiting.set(id, resolve);
    return id;
  }

  reply(correlationId: string | undefined, body: Uint8Array): void {
    if (correlationId === undefined) return;
    const r = this.waiting.get(correlationId);
    if (r === undefined) return;
    this.waiting.delete(correlationId);
    r(body);
  }
}

/**
 * timedCalls for a client driven by hand: each call takes a correlation id from `correlator` and
 * `send`s the request with it (replyTo set by `send`); the reply consumer feeds the correlator.
 */
export function correlatedCalls(
  count: number,
  concurrency: number,
  body: Buffer,
  correlator: Correlator,
  send: (correlationId: string) => unknown,
): Promise<number[]> {
  return timedCalls(
    count,
    concurrency,
    body,
    () =>
      new Promise<Uint8Array>((resolve, reject) => {
        const sent = send(correlator.next(resolve));
        if (sent instanceof Promise) sent.catch(reject);
      }),
  );
}

/** The pseudo-queue of RabbitMQ's direct reply-to. */
export const REPLY_TO = "amq.rabbitmq.reply-to";
