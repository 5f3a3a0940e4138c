/** A consumer's options, checked and resolved before anything is subscribed. */
import { describe, expect, it } from "vitest";
import { resolveConsumeOptions } from "../../src/client/consumer-options.js";
import { ConfigError } from "../../src/errors.js";

describe("resolveConsumeOptions", () => {
  it("defaults: requeue twice, prefetch 50, as many handlers as the prefetch, 10 s drain", () => {
    expect(resolveConsumeOptions({ queue: "q" })).toEqual({
      policy: "requeue",
      maxAttempts: 2,
      prefetch: 50,
      concurrency: 50,
      delays: [5000],
      deadLetterQueue: undefined,
      retryPrefix: "warren",
      drainTimeout: 10_000,
      manual: false,
    });
  });

  it("retry options choose the retry policy, five attempts, rounded delays and the dead-letter queue", () => {
    const r = resolveConsumeOptions({
      queue: "orders",
      retry: { delays: [100.4, 2000], deadLetter: "queue" },
    });
    expect(r.policy).toBe("retry");
    expect(r.maxAttempts).toBe(5);
    expect(r.delays).toEqual([100, 2000]);
    expect(r.deadLetterQueue).toMatch(/orders/);
  });

  it("retry.prefix names the dead-letter queue (the default one is warren's)", () => {
    expect(resolveConsumeOptions({ queue: "orders", retry: { deadLetter: "queue" } })).toMatchObject({
      retryPrefix: "warren",
      deadLetterQueue: "warren.dead.orders",
    });
    expect(
      resolveConsumeOptions({ queue: "orders", retry: { prefix: "billing", deadLetter: "queue" } }),
    ).toMatchObject({ retryPrefix: "billing", deadLetterQueue: "billing.dead.orders" });
    expect(
      resolveConsumeOptions({ queue: "orders", retry: { prefix: "billing", deadLetter: { queue: "mine" } } })
        .deadLetterQueue,
    ).toBe("mine");
  });

  it("a dead-letter queue name past 255 bytes is a ConfigError", () => {
    expect(() =>
      resolveConsumeOptions({ queue: "q".repeat(250), retry: { prefix: "team-a", deadLetter: "queue" } }),
    ).toThrow(/"team-a\.dead\.q+…" is longer than AMQP's 255 bytes/);
  });

  it("the prefetch is at least the concurrency; a manual consumer has no concurrency bound", () => {
    expect(resolveConsumeOptions({ queue: "q", prefetch: 5, concurrency: 20 }).prefetch).toBe(20);
    expect(resolveConsumeOptions({ queue: "q", manual: true }).concurrency).toBe(Number.POSITIVE_INFINITY);
  });

  it.each([
    [{ concurrency: 0 }, /concurrency must be at least 1/],
    [{ prefetch: -1 }, /prefetch must be at least 1/],
    [{ maxAttempts: 0 }, /maxAttempts must be at least 1/],
    [{ timeoutMs: 0 }, /timeoutMs must be positive/],
    [{ streamOffset: "first" as const, noAck: true }, /stream consumer needs manual acks/],
    [{ retry: { delays: [] } }, /retry.delays/],
    [{ retry: { delays: [-1] } }, /retry.delays/],
    [{ retry: { prefix: "" } }, /retry.prefix must be a non-empty string/],
    [{ retry: { prefix: "amq.mine" } }, /starts with "amq."/],
    [{ retry: { prefix: "p".repeat(250) } }, /longer than AMQP's 255 bytes: shorten retry.prefix/],
  ])("%o is a ConfigError naming it", (bad, message) => {
    let thrown: unknown;
    try {
      resolveConsumeOptions({ queue: "q", ...bad });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toMatch(message);
  });
});
