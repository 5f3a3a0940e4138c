/** The retry topology and the attempt count read from headers (src/client/retry.ts). */
import { describe, expect, it } from "vitest";
import { attemptOf, copyProperties, delayFor, retriesOf, retryTopology } from "../../src/client/retry.js";

describe("retry", () => {
  it("declares one exchange, one delay queue and one binding per distinct delay", () => {
    const t = retryTopology([500, 1000, 1000], "warren.dead.q");
    expect(t.exchanges).toEqual([{ name: "warren.retry", type: "headers", durable: true }]);
    expect(t.queues).toEqual([
      {
        name: "warren.retry.500ms",
        durable: true,
        arguments: { "x-message-ttl": 500, "x-dead-letter-exchange": "" },
      },
      {
        name: "warren.retry.1000ms",
        durable: true,
        arguments: { "x-message-ttl": 1000, "x-dead-letter-exchange": "" },
      },
      { name: "warren.dead.q", durable: true },
    ]);
    expect(t.bindings?.map((b) => b.arguments)).toEqual([
      { "x-match": "all", "warren-retry-delay": "500" },
      { "x-match": "all", "warren-retry-delay": "1000" },
    ]);
  });

  it("counts retries from x-death entries of warren's delay queues, or warren-retries", () => {
    expect(retriesOf(undefined)).toBe(0);
    const deaths = [
      { queue: "warren.retry.500ms", reason: "expired", count: 2 },
      { queue: "warren.retry.1000ms", reason: "expired", count: BigInt(1) },
      { queue: "orders", reason: "rejected", count: 5 },
      { queue: "other.delay", reason: "expired", count: 7 },
    ];
    expect(retriesOf({ "x-death": deaths })).toBe(3);
    expect(retriesOf({ "x-death": deaths, "warren-retries": 4 })).toBe(4);
    expect(retriesOf({ "warren-retries": 2 })).toBe(2);
  });

  it("with a prefix: its own exchange, delay queues and dead-letter queue, and only its x-death entries count", () => {
    const t = retryTopology([500], "billing.dead.q", "billing");
    expect(t.exchanges?.map((e) => e.name)).toEqual(["billing.retry"]);
    expect(t.queues?.map((q) => q.name)).toEqual(["billing.retry.500ms", "billing.dead.q"]);
    expect(t.bindings).toEqual([
      {
        exchange: "billing.retry",
        queue: "billing.retry.500ms",
        arguments: { "x-match": "all", "warren-retry-delay": "500" },
      },
    ]);
    const deaths = [
      { queue: "billing.retry.500ms", reason: "expired", count: 2 },
      { queue: "warren.retry.500ms", reason: "expired", count: 5 },
    ];
    expect(retriesOf({ "x-death": deaths }, "billing")).toBe(2);
    expect(retriesOf({ "x-death": deaths })).toBe(5);
    expect(attemptOf({ headers: { "x-death": deaths } }, false, "billing")).toBe(3);
  });

  it("attempt = 1 + retries + redeliveries", () => {
    expect(attemptOf({}, false)).toBe(1);
    expect(attemptOf({}, true)).toBe(2);
    expect(attemptOf({ headers: { "x-delivery-count": 3 } }, true)).toBe(4);
    expect(attemptOf({ headers: { "warren-retries": 2 } }, false)).toBe(3);
  });

  it("the last delay repeats", () => {
    expect([0, 1, 2, 5].map((n) => delayFor([100, 200, 300], n))).toEqual([100, 200, 300, 300]);
  });

  it("the copy keeps the original route, drops the quorum count and the expiration", () => {
    const p = copyProperties(
      { messageId: "m", expiration: "100", headers: { a: 1, "x-delivery-count": 2 } },
      { exchange: "orders", routingKey: "order.created" },
      { "warren-retries": 1 },
    );
    expect(p).toEqual({
      messageId: "m",
      headers: {
        a: 1,
        "warren-original-exchange": "orders",
        "warren-original-routing-key": "order.created",
        "warren-retries": 1,
      },
    });
    const again = copyProperties(p, { exchange: "", routingKey: "q" }, { "warren-retries": 2 });
    expect(again.headers?.["warren-original-exchange"]).toBe("orders");
  });
});
