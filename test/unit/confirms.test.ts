/** The confirm tracker against a reference model: a plain set of unsettled sequence numbers. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfirmTracker } from "../../src/amqp/confirms.js";

type Op =
  | { kind: "add"; tracked: boolean }
  | { kind: "ack"; pick: number; multiple: boolean }
  | { kind: "drain" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("add" as const), tracked: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("ack" as const),
      pick: fc.nat({ max: 1000 }),
      multiple: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drain" as const) }) },
);

describe("ConfirmTracker", () => {
  it("settles exactly what the model settles, in sequence order, each entry once", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
        const t = new ConfirmTracker<number>();
        const model = new Set<number>(); // tracked, unsettled
        let next = 1;
        for (const op of ops) {
          if (op.kind === "add") {
            const seq = t.add(op.tracked ? next : undefined);
            expect(seq).toBe(next);
            if (op.tracked) model.add(next);
            next++;
          } else if (op.kind === "ack") {
            // Tags the broker could send: anything issued so far (even already settled ones).
            if (next === 1) continue;
            const tag = 1 + (op.pick % (next - 1));
            const expected = [...model]
              .filter((s) => (op.multiple ? s <= tag : s === tag))
              .sort((a, b) => a - b);
            // Recorded in the callback, asserted after it: each settled entry is the one added for its seq.
            const got: [number, number][] = [];
            t.settle(tag, op.multiple, (seq, entry) => got.push([seq, entry]));
            expect(got).toEqual(expected.map((s) => [s, s]));
            for (const s of expected) model.delete(s);
          } else {
            const drained = t.drain().map(([seq]) => seq);
            expect(drained).toEqual([...model].sort((a, b) => a - b));
            model.clear();
          }
          expect(t.size).toBe(model.size);
          expect(t.nextSeq).toBe(next);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("a multiple ack covers each sequence number once over the tracker's life (amortised O(1))", () => {
    const t = new ConfirmTracker<number>();
    for (let i = 1; i <= 100_000; i++) t.add(i);
    let calls = 0;
    for (let tag = 1000; tag <= 100_000; tag += 1000) t.settle(tag, true, () => calls++);
    // Acks that come again for settled tags cost nothing and settle nothing.
    for (let tag = 1000; tag <= 100_000; tag += 1000) t.settle(tag, true, () => calls++);
    expect(calls).toBe(100_000);
    expect(t.size).toBe(0);
  });
});
