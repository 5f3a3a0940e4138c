/** The fault table: its classification of each error, and docs/faults.md saying the same as FAULTS. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ChannelClosedByBroker,
  ConfigError,
  ConnectionClosedByBroker,
  ConnectionLimitError,
  ConnectTimeoutError,
  CredentialsError,
  HandshakeError,
  HeartbeatTimeoutError,
  QueueNotFoundError,
  RestartIntensityError,
  SocketError,
  TlsError,
  VhostNotAllowedError,
} from "../../src/errors.js";
import {
  brokerCloseIsTransient,
  FAULTS,
  isCallerFault,
  isConnectionLimit,
  isPermanent,
  isRefusal,
  isReported,
  isTransient,
  refusedPublishTo,
  systemCode,
} from "../../src/faults.js";

const close = (replyCode: number, replyText = "x", methodName?: string) => ({
  replyCode,
  replyText,
  classId: 0,
  methodId: 0,
  methodName,
});
const sys = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5672`), { code });

describe("the fault table's classification", () => {
  const cases: [string, unknown, "transient" | "permanent", boolean][] = [
    ["refused", new SocketError("refused", { cause: sys("ECONNREFUSED") }), "transient", false],
    ["reset", new SocketError("reset", { cause: sys("ECONNRESET") }), "transient", false],
    ["DNS not found", new SocketError("dns", { cause: sys("ENOTFOUND") }), "transient", true],
    ["DNS not answering", new SocketError("dns", { cause: sys("EAI_AGAIN") }), "transient", true],
    ["connect timeout", new ConnectTimeoutError("slow"), "transient", false],
    ["heartbeat timeout", new HeartbeatTimeoutError("silent"), "transient", false],
    ["TLS trust", new TlsError("untrusted"), "permanent", false],
    ["not AMQP", new HandshakeError("http"), "permanent", false],
    ["credentials", new AuthenticationError("refused"), "permanent", false],
    ["vhost", new VhostNotAllowedError(close(530, "NOT_ALLOWED - vhost v not found")), "permanent", false],
    [
      "connection limit",
      new ConnectionLimitError(close(530, "connection limit (1) is reached")),
      "transient",
      true,
    ],
    ["320 forced", new ConnectionClosedByBroker(close(320, "CONNECTION_FORCED")), "transient", false],
    ["541 internal", new ConnectionClosedByBroker(close(541, "INTERNAL_ERROR")), "transient", false],
    ["506 resource", new ConnectionClosedByBroker(close(506, "RESOURCE_ERROR")), "transient", false],
    [
      "505 unexpected frame",
      new ConnectionClosedByBroker(close(505, "UNEXPECTED_FRAME")),
      "transient",
      false,
    ],
    ["403 on the connection", new ConnectionClosedByBroker(close(403, "ACCESS_REFUSED")), "permanent", false],
    ["an unknown close code", new ConnectionClosedByBroker(close(599, "?")), "transient", true],
    ["missing queue", new QueueNotFoundError("q"), "transient", true],
    [
      "405 locked",
      new ChannelClosedByBroker(close(405, "RESOURCE_LOCKED", "basic.consume")),
      "transient",
      true,
    ],
    [
      "404 on a publish",
      new ChannelClosedByBroker(close(404, "NOT_FOUND", "basic.publish")),
      "transient",
      false,
    ],
    ["a throwing credentials provider", new CredentialsError("x", { reason: "provider" }), "transient", true],
    ["a refused refreshed secret", new CredentialsError("x", { reason: "refused" }), "transient", true],
    ["credentials expired unrefreshed", new CredentialsError("x", { reason: "expired" }), "transient", true],
    ["malformed credentials", new CredentialsError("x", { reason: "malformed" }), "permanent", false],
    ["giveUpAfter", new RestartIntensityError("gave up"), "permanent", false],
    ["configuration", new ConfigError("bad url"), "permanent", false],
    ["an untyped error", new Error("boom"), "transient", false],
  ];
  for (const [name, error, cls, reported] of cases) {
    it(`${name}: ${cls}${reported ? ", reported" : ""}`, () => {
      expect(isTransient(error)).toBe(cls === "transient");
      expect(isPermanent(error)).toBe(cls === "permanent");
      expect(isReported(error)).toBe(reported);
    });
  }

  it("RabbitMQ's connection-limit refusals (vhost, user, node) are told apart from a refused vhost", () => {
    expect(
      isConnectionLimit(
        530,
        "NOT_ALLOWED - access to vhost 'v' refused for user 'guest': connection limit (1) is reached",
      ),
    ).toBe(true);
    expect(
      isConnectionLimit(
        530,
        "NOT_ALLOWED - Connection refused for user 'u': user connection limit (2) is reached",
      ),
    ).toBe(true);
    expect(isConnectionLimit(530, "NOT_ALLOWED - vhost v not found")).toBe(false);
    expect(isConnectionLimit(530, "NOT_ALLOWED - access to vhost 'v' refused for user 'u'")).toBe(false);
    expect(isConnectionLimit(320, "connection limit")).toBe(false);
    expect(brokerCloseIsTransient(530)).toBe(false);
    expect(brokerCloseIsTransient(320)).toBe(true);
  });

  it("caller faults: a channel closed for what the caller asked (publish, declare, consume) reopens uncounted", () => {
    expect(isCallerFault(new ChannelClosedByBroker(close(404, "NOT_FOUND", "basic.publish")))).toBe(true);
    expect(isCallerFault(new ChannelClosedByBroker(close(406, "PRECONDITION_FAILED", "queue.declare")))).toBe(
      true,
    );
    expect(isCallerFault(new ChannelClosedByBroker(close(404, "NOT_FOUND", "exchange.bind")))).toBe(true);
    expect(isCallerFault(new ChannelClosedByBroker(close(406, "PRECONDITION_FAILED", "basic.ack")))).toBe(
      false,
    );
    expect(isCallerFault(new ChannelClosedByBroker(close(541, "INTERNAL_ERROR")))).toBe(false);
    expect(isCallerFault(new ConnectionClosedByBroker(close(404, "NOT_FOUND", "basic.publish")))).toBe(false);
    expect(isRefusal(new ChannelClosedByBroker(close(403, "ACCESS_REFUSED", "basic.consume")))).toBe(true);
    expect(isRefusal(new ChannelClosedByBroker(close(406, "PRECONDITION_FAILED", "queue.declare")))).toBe(
      true,
    );
    expect(isRefusal(new ChannelClosedByBroker(close(404, "NOT_FOUND", "basic.consume")))).toBe(false);
  });

  it("systemCode finds the Node error code through causes", () => {
    expect(systemCode(new SocketError("x", { cause: sys("ENOTFOUND") }))).toBe("ENOTFOUND");
    expect(systemCode(new Error("x"))).toBeUndefined();
    expect(systemCode(new QueueNotFoundError("q"))).toBeUndefined();
  });
});

describe("refusedPublishTo", () => {
  const denied = (exchange: string) =>
    close(
      403,
      `ACCESS_REFUSED - write access to exchange '${exchange}' in vhost '/' refused for user 'u'`,
      "basic.publish",
    );

  it("is the broker refusing a publish to that exchange, the default one named amq.default", () => {
    expect(refusedPublishTo(denied("orders"), "orders")).toBe(true);
    expect(refusedPublishTo(denied("amq.default"), "")).toBe(true);
    expect(
      refusedPublishTo(close(404, "NOT_FOUND - no exchange 'x' in vhost '/'", "basic.publish"), "x"),
    ).toBe(true);
  });

  it("is no verdict on a message to another exchange, or when another method caused the close", () => {
    expect(refusedPublishTo(denied("orders"), "")).toBe(false);
    expect(refusedPublishTo(denied("amq.default"), "orders")).toBe(false);
    expect(refusedPublishTo(denied("orders"), "invoices")).toBe(false);
    expect(refusedPublishTo(close(404, "NOT_FOUND - no exchange 'x' in vhost '/'", "queue.bind"), "x")).toBe(
      false,
    );
  });
});

describe("docs/faults.md", () => {
  const doc = readFileSync(new URL("../../docs/faults.md", import.meta.url), "utf8");
  const rows = doc
    .split("\n")
    .filter((l) => l.startsWith("| ") && !l.startsWith("| fault |") && !l.startsWith("|---"))
    .map((l) =>
      l
        .slice(2, -2)
        .split(/(?<!\\) \| /)
        .map((c) => c.replace(/\\\|/g, "|")),
    )
    .filter((cells) => cells.length === 6);

  it("has one row per FAULTS row, saying the same", () => {
    expect(rows).toEqual(
      FAULTS.map((f) => [f.fault, f.class, f.reported ? "yes" : "no", f.error, f.code, f.action]),
    );
  });

  it("every typed error of the table is exported from errors.ts", async () => {
    const errors = (await import("../../src/errors.js")) as Record<string, unknown>;
    for (const f of FAULTS)
      for (const name of f.error.split(" / "))
        if (!name.startsWith("(")) expect(typeof errors[name], `${name} (${f.fault})`).toBe("function");
  });
});
