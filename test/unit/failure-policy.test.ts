/** The consumer's decision for a failed delivery, case by case (src/client/failure-policy.ts). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type FailedDelivery, onFailure, SETTLE_OF } from "../../src/client/failure-policy.js";

const base: FailedDelivery = {
  policy: "requeue",
  noAck: false,
  stream: false,
  attempt: 1,
  maxAttempts: 3,
  countable: true,
};

describe("onFailure", () => {
  it.each([
    [{ noAck: true, policy: "retry" }, "auto_ack"],
    [{ policy: "retry", attempt: 2 }, "retry"],
    [{ policy: "retry", attempt: 3 }, "dead_letter"],
    [{ policy: "retry", attempt: 3, stream: true }, "dead_letter"],
    [{ policy: "reject" }, "reject"],
    [{ policy: "reject", stream: true }, "ack"],
    [{ policy: "requeue", attempt: 2 }, "nack"],
    [{ policy: "requeue", attempt: 2, countable: false }, "republish"],
    [{ policy: "requeue", attempt: 3, countable: false }, "reject"],
    [{ policy: "retry", attempt: 2, countable: false }, "retry"],
    [{ policy: "requeue", attempt: 3 }, "reject"],
    [{ policy: "requeue", attempt: 1, stream: true }, "ack"],
  ] as const)("%o → %s", (change, decision) => {
    expect(onFailure({ ...base, ...change })).toBe(decision);
  });

  it("property: a delivery is only requeued or retried while attempts are left, and never nacked or rejected on a stream", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("requeue" as const, "reject" as const, "retry" as const),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 10 }),
        fc.boolean(),
        (policy, noAck, stream, attempt, maxAttempts, countable) => {
          const d = onFailure({ policy, noAck, stream, attempt, maxAttempts, countable });
          if (d === "nack" || d === "retry" || d === "republish") expect(attempt).toBeLessThan(maxAttempts);
          // A requeue the broker cannot count would come back as the same attempt: never sent.
          if (d === "nack") expect(countable).toBe(true);
          if (stream && (d === "nack" || d === "reject")) return false;
          if (noAck) expect(d).toBe("auto_ack");
          return true;
        },
      ),
    );
  });

  it("what is sent for each decision settled directly", () => {
    expect(SETTLE_OF).toEqual({ auto_ack: "ack", ack: "ack", reject: "reject", nack: "requeue" });
  });

  it('property: under "requeue", a message read from the broker\'s counts reaches maxAttempts (never loops)', () => {
    // Simulates a classic queue (redelivered flag only) and a quorum queue (x-delivery-count): each
    // failure feeds back what the broker would deliver next; the loop must end by maxAttempts.
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 1, max: 30 }), (quorum, maxAttempts) => {
        let retries = 0; // warren-retries on a copy
        let count: number | undefined; // x-delivery-count
        let redelivered = false;
        for (let deliveries = 1; deliveries <= maxAttempts + 1; deliveries++) {
          const attempt = 1 + retries + (count ?? (redelivered ? 1 : 0));
          const countable = !redelivered || count !== undefined;
          const d = onFailure({ ...base, maxAttempts, attempt, countable });
          if (d === "reject") return attempt === maxAttempts && deliveries === maxAttempts;
          if (d === "nack") {
            redelivered = true;
            if (quorum) count = (count ?? 0) + 1;
          } else if (d === "republish") {
            retries = attempt;
            redelivered = false;
            count = undefined;
          } else return false;
        }
        return false;
      }),
    );
  });
});
