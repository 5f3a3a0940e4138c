/** The consumer's decision for a failed delivery, case by case (src/client/failure-policy.ts). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type FailedDelivery, onFailure, SETTLE_OF } from "../../src/client/failure-policy.js";

const base: FailedDelivery = { policy: "requeue", noAck: false, stream: false, attempt: 1, maxAttempts: 3 };

describe("onFailure", () => {
  it.each([
    [{ noAck: true, policy: "retry" }, "auto_ack"],
    [{ policy: "retry", attempt: 2 }, "retry"],
    [{ policy: "retry", attempt: 3 }, "dead_letter"],
    [{ policy: "retry", attempt: 3, stream: true }, "dead_letter"],
    [{ policy: "reject" }, "reject"],
    [{ policy: "reject", stream: true }, "ack"],
    [{ policy: "requeue", attempt: 2 }, "nack"],
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
        (policy, noAck, stream, attempt, maxAttempts) => {
          const d = onFailure({ policy, noAck, stream, attempt, maxAttempts });
          if (d === "nack" || d === "retry") expect(attempt).toBeLessThan(maxAttempts);
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
});
