/** warren's defaults for RabbitMQ 4.x's client-visible changes, case by case (docs/rabbitmq-4.md). */
import { describe, expect, it } from "vitest";
import {
  CONSUMER_TIMEOUT_ARG,
  honoursConsumerTimeoutArgument,
  versionOf,
  withConsumerTimeout,
} from "../../src/client/consumer-timeout.js";
import { attemptOf, RETRIES_HEADER, redeliveryCountable } from "../../src/client/retry.js";
import { queueFlags } from "../../src/client/topology.js";
import { DeprecatedFeatureError } from "../../src/errors.js";
import { deprecatedFeatureIn, isPermanent } from "../../src/faults.js";

describe("queueFlags: never a transient non-exclusive queue unless asked", () => {
  it.each([
    [{ name: "q" }, { durable: true, exclusive: false }],
    [{}, { durable: false, exclusive: true }],
    [{ name: "" }, { durable: false, exclusive: true }],
    [{ exclusive: false }, { durable: true, exclusive: false }],
    [
      { name: "q", exclusive: true },
      { durable: false, exclusive: true },
    ],
    [
      { name: "q", durable: false, exclusive: true },
      { durable: false, exclusive: true },
    ],
    [
      { name: "q", durable: false },
      { durable: false, exclusive: false },
    ], // asked for: 4.3 refuses it
    [{ durable: true }, { durable: true, exclusive: true }],
  ])("%o → %o", (spec, flags) => {
    expect(queueFlags(spec)).toEqual(flags);
  });
});

describe("RabbitMQ 4.3's refusal of a deprecated feature", () => {
  const text =
    "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.\nBy default, this feature is not permitted anymore.";

  it("is recognised by its code and text only", () => {
    expect(deprecatedFeatureIn(541, text)).toBe("transient_nonexcl_queues");
    expect(deprecatedFeatureIn(541, "INTERNAL_ERROR - Feature `global_qos` is deprecated.")).toBe(
      "global_qos",
    );
    expect(deprecatedFeatureIn(541, "INTERNAL_ERROR")).toBeUndefined();
    expect(deprecatedFeatureIn(320, text)).toBeUndefined();
  });

  it("is a permanent, typed error saying what to do", () => {
    const e = new DeprecatedFeatureError({
      replyCode: 541,
      replyText: text,
      classId: 50,
      methodId: 10,
      methodName: "queue.declare",
      feature: "transient_nonexcl_queues",
    });
    expect(e.code).toBe("DEPRECATED_FEATURE");
    expect(e.feature).toBe("transient_nonexcl_queues");
    expect(isPermanent(e)).toBe(true);
    expect(e.message).toMatch(/in reply to queue\.declare/);
    expect(e.message).toMatch(/durable .*or exclusive/);
    expect(e.message).toMatch(/deprecated_features\.permit\.transient_nonexcl_queues = true/);
  });
});

describe("x-consumer-timeout on basic.consume", () => {
  it("reads broker versions", () => {
    expect(versionOf("3.10.7")).toEqual([3, 10]);
    expect(versionOf("4.3.0-rc.1")).toEqual([4, 3]);
    expect(versionOf(undefined)).toBeUndefined();
    expect(versionOf(Buffer.from("4.3.0"))).toBeUndefined();
    expect(
      ["3.10.7", "3.12.0", "4.2.6", "4.3.0", "4.4.1", "5.0.0"].map(honoursConsumerTimeoutArgument),
    ).toEqual([false, false, false, true, true, true]);
  });

  it("is timeoutMs plus a minute, only where the broker honours it, for manual acks, unless the caller set one", () => {
    const args = { "x-priority": 5 };
    expect(withConsumerTimeout(args, { timeoutMs: 2_000.4 }, "4.3.0")).toEqual({
      "x-priority": 5,
      [CONSUMER_TIMEOUT_ARG]: 62_001,
    });
    expect(withConsumerTimeout(undefined, { timeoutMs: 3_600_000 }, "4.3.1")).toEqual({
      [CONSUMER_TIMEOUT_ARG]: 3_660_000,
    });
    expect(withConsumerTimeout(args, { timeoutMs: 2000 }, "3.10.7")).toBe(args);
    expect(withConsumerTimeout(args, { timeoutMs: 2000 }, "4.2.6")).toBe(args);
    expect(withConsumerTimeout(args, { timeoutMs: 2000 }, undefined)).toBe(args);
    expect(withConsumerTimeout(args, {}, "4.3.0")).toBe(args);
    expect(withConsumerTimeout(args, { timeoutMs: 2000, noAck: true }, "4.3.0")).toBe(args);
    const own = { [CONSUMER_TIMEOUT_ARG]: 5000 };
    expect(withConsumerTimeout(own, { timeoutMs: 2000 }, "4.3.0")).toBe(own);
  });
});

describe("the attempt, on both counting schemes", () => {
  it("reads warren-retries, then x-delivery-count, then the redelivered flag", () => {
    expect(attemptOf({}, false)).toBe(1);
    expect(attemptOf({}, true)).toBe(2); // a classic queue: whether, not how often
    expect(attemptOf({ headers: { "x-delivery-count": 3 } }, true)).toBe(4); // a quorum queue
    expect(attemptOf({ headers: { [RETRIES_HEADER]: 2 } }, false)).toBe(3); // a copy warren sent
    expect(attemptOf({ headers: { [RETRIES_HEADER]: 2 } }, true)).toBe(4);
  });

  it("knows when the broker can count the next delivery", () => {
    expect(redeliveryCountable({}, false)).toBe(true);
    expect(redeliveryCountable({}, true)).toBe(false);
    // RabbitMQ 4.3 counts basic.reject (warren's requeue) but not basic.nack: the header may be absent.
    expect(redeliveryCountable({ headers: { "x-delivery-count": 1 } }, true)).toBe(true);
    expect(redeliveryCountable({ headers: { "x-delivery-count": 0n } }, true)).toBe(true);
  });
});
