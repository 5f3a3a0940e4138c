/**
 * A channel the client keeps open for its own work (publishing, declaring): opened through the
 * channel machine, reopened after channel exceptions (a refused publish or declare reopens it
 * without counting toward the restart intensity), renewed on request, escalated to the
 * connection when it fails too often. Callers wait, bounded, while it is (re)opened.
 */

import type { InspectionEvent } from "xstate";
import { type Actor, createActor, fromPromise } from "xstate";
import type { IntensityOptions } from "../../machines/backoff.js";
import { channelMachine } from "../../machines/channel.js";
import type { LifecycleError } from "../../machines/connection.js";
import type { Channel } from "../amqp/channel.js";
import {
  ChannelClosedByBroker,
  ClientClosedError,
  ConnectionClosedError,
  MethodTimeoutError,
  NotConnectedError,
} from "../errors.js";
import { isCallerFault } from "../faults.js";
import { Waiters } from "./waiters.js";

/** What a managed channel needs from its client. */
export interface ManagedChannelHost {
  /** A new raw channel on the current connection. */
  openRawChannel(): Promise<Channel>;
  /** The channel failed beyond its restart intensity: the connection is restarted. */
  escalate(error: LifecycleError): void;
  /** The client's state (named in a NotConnectedError). */
  readonly state: string;
  readonly metrics?: { readonly inspect: (ev: InspectionEvent) => void } | undefined;
}

/** A channel the client keeps open (publishing, declaring), reopened after channel exceptions. */
export class ManagedChannel {
  channel: Channel | undefined;
  readonly actor: Actor<typeof channelMachine>;
  private readonly waiters = new Waiters<Channel>();

  constructor(
    private readonly client: ManagedChannelHost,
    private readonly setup: (ch: Channel) => Promise<void>,
    connected: boolean,
    intensity: IntensityOptions,
  ) {
    const machine = channelMachine.provide({
      actors: {
        open: fromPromise(async () => {
          const ch = await client.openRawChannel();
          ch.on("close", (err) => {
            if (this.channel !== ch) return;
            this.channel = undefined;
            if (err instanceof ChannelClosedByBroker || err instanceof MethodTimeoutError) {
              // Refused publishes and declares are the caller's: they reopen the channel without
              // counting toward its restart intensity (which would end in a connection restart).
              this.actor.send({ type: "CHANNEL_CLOSED", error: err, caller: isCallerFault(err) });
            }
          });
          ch.on("flow", (active) => this.actor.send({ type: "FLOW", active }));
          await this.setup(ch);
          this.channel = ch;
        }),
        close: fromPromise(async () => {
          const ch = this.channel;
          this.channel = undefined;
          if (ch?.isOpen) await ch.close();
        }),
      },
    });
    this.actor = createActor(machine, {
      input: { connected, intensity },
      ...(client.metrics ? { inspect: client.metrics.inspect } : {}),
    });
    this.actor.subscribe((snap) => {
      const v = snap.value;
      if (typeof v === "object" && "open" in v) this.release();
      if (v === "failed") client.escalate(snap.context.error ?? new ConnectionClosedError("channel failed"));
      if (v === "closed") this.release(new ClientClosedError("the client was closed"));
    });
    this.actor.start();
  }

  /**
   * Closes the open channel `ch` and opens a fresh one (confirm mode and qos set up again):
   * for a channel that works but misbehaves, e.g. one the broker nacks every publish on after
   * a quorum queue lost its leader. What was unconfirmed on it is rejected with
   * ChannelClosedError (publishers send it again). Not counted toward the restart intensity.
   */
  renew(ch: Channel): boolean {
    if (this.channel !== ch || !ch.isOpen) return false;
    this.channel = undefined;
    this.actor.send({ type: "RENEW" });
    void ch.close().catch(() => undefined);
    return true;
  }

  /** The open channel, waiting (bounded) while it is being (re)opened. */
  get(timeout: number): Promise<Channel> {
    if (this.channel?.isOpen) return Promise.resolve(this.channel);
    return this.waiters.wait(
      timeout,
      () => new NotConnectedError(`no open channel within ${timeout} ms (${this.client.state})`),
    );
  }

  private release(err?: Error): void {
    const ch = this.channel;
    if (!err && !ch) return;
    if (err) this.waiters.rejectAll(err);
    else this.waiters.resolveAll(ch as Channel);
  }
}
