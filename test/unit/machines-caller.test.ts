/** A channel the broker closed because of the caller's request is reopened without counting toward its intensity. */
import { describe, expect, it } from "vitest";
import { createActor, fromPromise, SimulatedClock } from "xstate";
import { channelMachine } from "../../machines/channel.js";
import { ChannelClosedByBroker } from "../../src/errors.js";
import { nextTurn } from "../support/turn.js";

const notFound = () =>
  new ChannelClosedByBroker({
    replyCode: 404,
    replyText: "NOT_FOUND - no exchange 'x'",
    classId: 60,
    methodId: 40,
  });

function start() {
  const clock = new SimulatedClock();
  const machine = channelMachine.provide({
    actors: {
      open: fromPromise<void>(async () => undefined),
      close: fromPromise<void>(async () => undefined),
    },
  });
  const actor = createActor(machine, {
    clock,
    input: {
      connected: true,
      intensity: { maxRestarts: 2, withinMs: 60_000 },
      now: () => 0,
      random: () => 0,
    },
  });
  actor.start();
  return { actor, clock };
}

describe("channel machine: closes the caller caused", () => {
  it("reopen for ever without escalating", async () => {
    const { actor, clock } = start();
    for (let i = 0; i < 10; i++) {
      await nextTurn(); // the open actor's promise has settled
      expect(actor.getSnapshot().matches("open")).toBe(true);
      actor.send({ type: "CHANNEL_CLOSED", error: notFound(), caller: true });
      expect(actor.getSnapshot().value).toBe("reopening");
      clock.increment(1);
    }
    expect(actor.getSnapshot().context.restarts).toEqual([]);
  });

  it("renewals (RENEW: the owner replaces a channel that keeps nacking) reopen without counting", async () => {
    const { actor, clock } = start();
    for (let i = 0; i < 10; i++) {
      await nextTurn(); // the open actor's promise has settled
      expect(actor.getSnapshot().matches("open")).toBe(true);
      actor.send({ type: "RENEW" });
      expect(actor.getSnapshot().value).toBe("reopening");
      clock.increment(1);
    }
    await nextTurn(); // the open actor's promise has settled
    expect(actor.getSnapshot().matches("open")).toBe(true);
    expect(actor.getSnapshot().context.restarts).toEqual([]);
  });

  it("other closes count and, past the intensity, give up", async () => {
    const { actor, clock } = start();
    for (let i = 0; i < 2; i++) {
      await nextTurn(); // the open actor's promise has settled
      actor.send({ type: "CHANNEL_CLOSED", error: notFound() });
      expect(actor.getSnapshot().value).toBe("reopening");
      clock.increment(1);
    }
    await nextTurn(); // the open actor's promise has settled
    actor.send({ type: "CHANNEL_CLOSED", error: notFound() });
    expect(actor.getSnapshot().value).toBe("failed");
  });
});
