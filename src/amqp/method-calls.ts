/**
 * The synchronous method calls outstanding on one channel (e.g. `queue.declare` waiting for
 * `queue.declare-ok`). AMQP answers them in the order they were sent (§2.3.5.2), so a call is a
 * FIFO entry; each one is bounded by methodTimeout and, when the connection is instrumented,
 * reported sent, answered or timed out.
 */
import { FrameError } from "../errors.js";
import type { Method, MethodName } from "../protocol/generated/spec.js";
import type { MethodCallObserver } from "./channel-host.js";

interface Call {
  replies: readonly number[];
  resolve: (m: Method) => void;
  reject: (e: Error) => void;
}

export interface MethodCallsOptions {
  /** The channel number (named in errors). */
  channel: number;
  /** Milliseconds a call may wait for its reply (0: for ever). */
  timeout: number;
  observer: MethodCallObserver | undefined;
  /** A call got no reply in time: the caller gives the channel up (replies can no longer be matched). */
  onTimeout(name: MethodName, timeout: number): void;
}

export class MethodCalls {
  private calls: Call[] = [];

  constructor(private readonly o: MethodCallsOptions) {}

  get size(): number {
    return this.calls.length;
  }

  /** Waits for one of `replies` to the method `name`, just sent. */
  expect(
    replies: readonly number[],
    resolve: (m: Method) => void,
    reject: (e: Error) => void,
    name: MethodName,
  ): void {
    const { timeout, observer } = this.o;
    let done = resolve;
    if (observer !== undefined) {
      observer.methodSent?.(name);
      const sent = performance.now();
      done = (m) => {
        observer.methodReplied?.(name, (performance.now() - sent) / 1000);
        resolve(m);
      };
    }
    if (timeout <= 0) {
      this.calls.push({ replies, resolve: done, reject });
      return;
    }
    const timer = setTimeout(() => {
      observer?.methodTimedOut?.(name);
      this.o.onTimeout(name, timeout);
    }, timeout);
    this.calls.push({
      replies,
      resolve: (m) => {
        clearTimeout(timer);
        done(m);
      },
      reject: (e) => {
        clearTimeout(timer);
        reject(e);
      },
    });
  }

  /** Answers the oldest call with `m`; a reply nobody waits for is a 505 (unexpected frame). */
  reply(m: Method): void {
    const c = this.calls[0];
    if (!c?.replies.includes(m.id)) {
      throw new FrameError(`unexpected ${m.name} on channel ${this.o.channel}`, { replyCode: 505 });
    }
    this.calls.shift();
    c.resolve(m);
  }

  /** Rejects every outstanding call with `e` (the channel closed). */
  rejectAll(e: Error): void {
    const calls = this.calls;
    this.calls = [];
    for (const c of calls) c.reject(e);
  }
}
