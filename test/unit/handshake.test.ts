/** The handshake's pure parts: what tune settles, and the typed error of a refusal. */
import { describe, expect, it } from "vitest";
import { clientProperties, negotiate, refusal } from "../../src/amqp/handshake.js";
import {
  AuthenticationError,
  ConnectionClosedByBroker,
  ConnectionLimitError,
  VhostNotAllowedError,
} from "../../src/errors.js";

describe("negotiate", () => {
  it("takes the lower of each limit, 0 meaning none on either side", () => {
    const ours = { channelMax: 2047, frameMax: 131072, heartbeat: undefined };
    expect(negotiate(ours, { channelMax: 0, frameMax: 0, heartbeat: 60 })).toEqual({
      channelMax: 2047,
      frameMax: 131072,
      heartbeat: 60,
    });
    expect(negotiate({ ...ours, frameMax: 0 }, { channelMax: 100, frameMax: 4096, heartbeat: 60 })).toEqual({
      channelMax: 100,
      frameMax: 4096,
      heartbeat: 60,
    });
    // Neither side limits channels: the protocol's highest number.
    expect(
      negotiate({ ...ours, channelMax: 0 }, { channelMax: 0, frameMax: 0, heartbeat: 0 }).channelMax,
    ).toBe(65535);
  });

  it("never goes under the protocol's minimum frame, and our heartbeat wins when set", () => {
    const t = negotiate(
      { channelMax: 0, frameMax: 512, heartbeat: 5 },
      { channelMax: 0, frameMax: 131072, heartbeat: 60 },
    );
    expect(t.frameMax).toBe(4096);
    expect(t.heartbeat).toBe(5);
  });
});

describe("refusal", () => {
  const o = { username: "svc", vhost: "orders" };
  const close = (replyCode: number, replyText: string) => ({
    replyCode,
    replyText,
    classId: 10,
    methodId: 40,
  });

  it("says which credentials or vhost to check, never the password", () => {
    const auth = refusal(close(403, "ACCESS_REFUSED - Login was refused"), "start-ok", o);
    expect(auth).toBeInstanceOf(AuthenticationError);
    expect(auth.message).toMatch(/user "svc"/);
    const vhost = refusal(close(530, "NOT_ALLOWED - vhost orders not found"), "open", o);
    expect(vhost).toBeInstanceOf(VhostNotAllowedError);
    expect(vhost.message).toMatch(/vhost "orders" is missing or user "svc" may not use it/);
    // A 403 at connection.open is the vhost's permission, not the login.
    expect(refusal(close(403, "ACCESS_REFUSED - access to vhost denied"), "open", o)).toBeInstanceOf(
      VhostNotAllowedError,
    );
  });

  it("tells a connection limit from any other close", () => {
    const limit = refusal(close(530, "NOT_ALLOWED - connection limit (10) is reached"), "open", o);
    expect(limit).toBeInstanceOf(ConnectionLimitError);
    expect(refusal(close(320, "CONNECTION_FORCED - shutdown"), "open", o)).toBeInstanceOf(
      ConnectionClosedByBroker,
    );
  });
});

describe("clientProperties", () => {
  it("names the product and the connection, and lets the caller's properties override", () => {
    const p = clientProperties({
      clientProperties: { information: "orders service" },
      connectionName: "orders",
    });
    expect(p).toMatchObject({ product: "warren", information: "orders service", connection_name: "orders" });
    expect(p["capabilities"]).toMatchObject({ publisher_confirms: true, authentication_failure_close: true });
  });
});
