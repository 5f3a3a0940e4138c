/**
 * The acks of one turn, coalesced: checked against a model of the broker's unacked set, which
 * closes the channel (406) on an ack of a tag it does not hold and must never lose a delivery that
 * is still being handled.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AckBatch, type AckChannel } from "../../src/client/ack-batch.js";

/** The broker's side of one channel: the deliveries it sent and has not had settled. */
class Broker implements AckChannel {
  isOpen = true;
  readonly unacked = new Set<number>();
  readonly frames: { tag: number; multiple: boolean }[] = [];
  next = 1;

  deliver(): number {
    const t = this.next++;
    this.unacked.add(t);
    return t;
  }

  basicAck(tag: number, o: { multiple?: boolean } = {}): void {
    this.frames.push({ tag, multiple: o.multiple === true });
    if (!this.unacked.has(tag)) throw new Error(`406 PRECONDITION_FAILED: unknown delivery tag ${tag}`);
    if (o.multiple) {
      for (const t of [...this.unacked]) if (t <= tag) this.unacked.delete(t);
    } else this.unacked.delete(tag);
  }

  /** basic.nack / basic.reject of one tag. */
  refuse(tag: number): void {
    if (!this.unacked.delete(tag)) throw new Error(`406 PRECONDITION_FAILED: unknown delivery tag ${tag}`);
  }
}

/** A batch whose turn ends when the test says so. */
function setup() {
  const broker = new Broker();
  let turnEnd: (() => void) | undefined;
  const batch = new AckBatch(broker, (fn) => {
    turnEnd = fn;
  });
  const endTurn = () => {
    const f = turnEnd;
    turnEnd = undefined;
    f?.();
  };
  const deliver = () => {
    const t = broker.deliver();
    batch.delivered(t);
    return t;
  };
  return { broker, batch, endTurn, deliver };
}

describe("AckBatch", () => {
  it("sends the acks of one turn as one basic.ack with multiple", () => {
    const { broker, batch, endTurn, deliver } = setup();
    const tags = Array.from({ length: 100 }, deliver);
    for (const t of tags) batch.ack(t);
    expect(broker.frames).toEqual([]);
    endTurn();
    expect(broker.frames).toEqual([{ tag: 100, multiple: true }]);
    expect(broker.unacked.size).toBe(0);
    expect(batch.sent).toEqual({ frames: 1, acks: 100 });
  });

  it("never covers a delivery still being handled: the acks above it go one by one, then one frame covers the rest", () => {
    const { broker, batch, endTurn, deliver } = setup();
    const [a, b, c, d] = [deliver(), deliver(), deliver(), deliver()];
    batch.ack(a!);
    batch.ack(c!);
    batch.ack(d!);
    endTurn();
    // b is still being handled: a alone below it, c and d singly.
    expect(broker.frames).toEqual([
      { tag: c!, multiple: false },
      { tag: d!, multiple: false },
      { tag: a!, multiple: false },
    ]);
    expect([...broker.unacked]).toEqual([b]);
    const e = deliver();
    batch.ack(b!);
    batch.ack(e);
    endTurn();
    expect(broker.frames.at(-1)).toEqual({ tag: e, multiple: true });
    expect(broker.unacked.size).toBe(0);
  });

  it("a nacked or rejected delivery does not hold the others back", () => {
    const { broker, batch, endTurn, deliver } = setup();
    const tags = Array.from({ length: 5 }, deliver);
    broker.refuse(tags[1]!);
    batch.settled(tags[1]!);
    for (const t of [tags[0]!, tags[2]!, tags[3]!, tags[4]!]) batch.ack(t);
    endTurn();
    expect(broker.frames).toEqual([{ tag: tags[4], multiple: true }]);
    expect(broker.unacked.size).toBe(0);
  });

  it("a lone ack is a plain basic.ack", () => {
    const { broker, batch, endTurn, deliver } = setup();
    batch.ack(deliver());
    endTurn();
    expect(broker.frames).toEqual([{ tag: 1, multiple: false }]);
  });

  it("once a tag was skipped, it never acks with multiple (that could cover a delivery it never saw)", () => {
    const { broker, batch, endTurn } = setup();
    broker.deliver(); // tag 1: never reached this consumer
    const tags = [broker.deliver(), broker.deliver()];
    for (const t of tags) batch.delivered(t);
    for (const t of tags) batch.ack(t);
    endTurn();
    expect(broker.frames).toEqual([
      { tag: 2, multiple: false },
      { tag: 3, multiple: false },
    ]);
    expect([...broker.unacked]).toEqual([1]);
  });

  it("flush() sends at once (before a cancel or close); the turn's end then has nothing left", () => {
    const { broker, batch, endTurn, deliver } = setup();
    batch.ack(deliver());
    batch.ack(deliver());
    expect(batch.held).toBe(2);
    batch.flush();
    expect(broker.frames).toEqual([{ tag: 2, multiple: true }]);
    endTurn();
    expect(broker.frames).toHaveLength(1);
  });

  it("drops what it holds when the channel closed first (the broker redelivers those)", () => {
    const { broker, batch, endTurn, deliver } = setup();
    batch.ack(deliver());
    broker.isOpen = false;
    endTurn();
    expect(broker.frames).toEqual([]);
    expect(batch.held).toBe(0);
  });

  it("any order of deliveries, acks, nacks and turns: no 406, nothing still handled is acked, every ack arrives", () => {
    type Step = { kind: "deliver" } | { kind: "settle"; pick: number; ack: boolean } | { kind: "turn" };
    const step = fc.oneof(
      fc.constant<Step>({ kind: "deliver" }),
      fc.record({ kind: fc.constant("settle" as const), pick: fc.nat(), ack: fc.boolean() }),
      fc.constant<Step>({ kind: "turn" }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
        const { broker, batch, endTurn, deliver } = setup();
        const handling: number[] = [];
        const acked = new Set<number>();
        for (const s of steps) {
          if (s.kind === "deliver") handling.push(deliver());
          else if (s.kind === "turn") endTurn();
          else if (handling.length > 0) {
            const [t] = handling.splice(s.pick % handling.length, 1);
            if (s.ack) {
              batch.ack(t!);
              acked.add(t!);
            } else {
              broker.refuse(t!);
              batch.settled(t!);
            }
          }
          // Nothing still being handled has been settled at the broker.
          for (const t of handling) expect(broker.unacked.has(t)).toBe(true);
        }
        endTurn();
        for (const t of acked) expect(broker.unacked.has(t)).toBe(false);
        expect(broker.unacked.size).toBe(handling.length);
        expect(batch.sent.acks).toBe(acked.size);
      }),
      { numRuns: 300 },
    );
  });
});
