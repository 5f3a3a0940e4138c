/**
 * A fake of PublisherHost (and so of the relay's RelayHost): the supervised channel is a
 * FakeChannel the test opens and replaces; waiting for it is bounded as the real one is.
 */
import type { Channel } from "../../../src/amqp/channel.js";
import type { PublisherHost } from "../../../src/client/publisher.js";
import { Waiters } from "../../../src/client/waiters.js";
import { NotConnectedError } from "../../../src/errors.js";
import { FakeChannel } from "./fake-channel.js";

export class FakePublisherHost implements PublisherHost {
  /** The supervised channel, open or not; undefined before the first open(). */
  ch: FakeChannel | undefined;
  /** Every channel opened, in order. */
  readonly opened: FakeChannel[] = [];
  /** The channels the publisher asked to renew, in order. */
  readonly renewed: FakeChannel[] = [];
  blocked = false;
  closed = false;
  private readonly waiters = new Waiters<Channel>();
  private readonly stateListeners: ((state: string) => void)[] = [];

  constructor(private readonly confirm = true) {}

  /** A new channel becomes the supervised one; callers waiting for it get it. */
  open(): FakeChannel {
    const ch = new FakeChannel({ confirm: this.confirm });
    this.ch = ch;
    this.opened.push(ch);
    this.waiters.resolveAll(ch.channel);
    return ch;
  }

  /** The client's state changed (the publisher resumes on "running"). */
  setState(state: string): void {
    for (const fn of this.stateListeners) fn(state);
  }

  channel(timeout: number): Promise<Channel> {
    if (this.ch?.isOpen) return Promise.resolve(this.ch.channel);
    return this.waiters.wait(timeout, () => new NotConnectedError(`no open channel within ${timeout} ms`));
  }

  current(): Channel | undefined {
    return this.ch?.isOpen ? this.ch.channel : undefined;
  }

  renew(ch: Channel): void {
    this.renewed.push(FakeChannel.of(ch)!);
  }

  onStateChange(fn: (state: string) => void): void {
    this.stateListeners.push(fn);
  }
}
