/** Connection-level behaviour against the real RabbitMQ on the main node. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ChannelClosedError,
  Connection,
  ConnectionClosedByBroker,
  ConnectionClosedError,
  SocketError,
  VhostNotAllowedError,
  WarrenError,
} from "../../src/index.js";
import { rejection } from "../support/async.js";
import {
  AMQP_URL,
  addUser,
  addVhost,
  amqpUrlWith,
  closeConnectionsNamed,
  deleteUser,
  deleteVhost,
  rabbitmqctl,
  uniqueName,
} from "../support/broker.js";
import { closedPort } from "../support/ports.js";
import { until } from "../support/wait.js";

function allText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e && i < 10; i++) {
    parts.push(String(e), (e as Error).stack ?? "", JSON.stringify(e) ?? "");
    e = (e as Error).cause;
  }
  return parts.join("\n");
}

describe("connection against RabbitMQ", () => {
  const user = uniqueName("warren-user");
  const password = `pw-${uniqueName("secret")}`;
  const vhost = uniqueName("warren-vhost");

  beforeAll(async () => {
    await addUser(user, password);
    await addVhost(vhost, { grantTo: user });
  });
  afterAll(async () => {
    await deleteUser(user);
    await deleteVhost(vhost);
  });

  it("negotiates tune values and reports the server", async () => {
    const conn = await Connection.open({ url: AMQP_URL, heartbeat: 7, channelMax: 64, frameMax: 65536 });
    try {
      expect(conn.isOpen).toBe(true);
      expect(conn.heartbeat).toBe(7);
      expect(conn.channelMax).toBe(64);
      expect(conn.frameMax).toBe(65536);
      expect(conn.server?.properties["product"]).toBe("RabbitMQ");
      expect(conn.server?.mechanisms).toContain("PLAIN");
    } finally {
      await conn.close();
    }
    expect(conn.isOpen).toBe(false);
  });

  it("logs in with PLAIN and AMQPLAIN as a non-guest user on its own vhost", async () => {
    for (const mech of ["PLAIN", "AMQPLAIN"] as const) {
      const conn = await Connection.open({
        url: amqpUrlWith({ user, password, vhost }),
        authMechanism: mech,
      });
      const ch = await conn.openChannel();
      const q = await ch.queueDeclare({ exclusive: true });
      expect(q.queue).toMatch(/^amq\.gen-/);
      await conn.close();
    }
  });

  it("a wrong password is an AuthenticationError that never shows the password", async () => {
    const wrong = "Wrong-Password-XYZZY-42";
    const err = await rejection(Connection.open(amqpUrlWith({ user, password: wrong, vhost })));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as AuthenticationError).recoverable).toBe(false);
    expect((err as Error).message).toContain(user);
    expect(allText(err)).not.toContain(wrong);
    expect(allText(err)).not.toContain(password);
  });

  it("a missing vhost is a VhostNotAllowedError (530)", async () => {
    const err = await rejection(Connection.open(amqpUrlWith({ vhost: "no-such-vhost-warren" })));
    expect(err).toBeInstanceOf(VhostNotAllowedError);
    expect((err as VhostNotAllowedError).replyCode).toBe(530);
    expect((err as VhostNotAllowedError).recoverable).toBe(false);
    expect((err as Error).message).toContain("no-such-vhost-warren");
  });

  it("a refused port is a recoverable SocketError", async () => {
    const port = await closedPort();
    const err = await rejection(Connection.open({ host: "127.0.0.1", port, connectionTimeout: 2000 }));
    expect(err).toBeInstanceOf(SocketError);
    expect((err as SocketError).recoverable).toBe(true);
    expect((err as Error).message).toContain("ECONNREFUSED");
  });

  it("shows its connection_name and capabilities to the broker", async () => {
    const name = uniqueName("warren-conn");
    const conn = await Connection.open({ url: AMQP_URL, connectionName: name });
    try {
      // The broker lists a new connection's properties asynchronously: ask until it does.
      let out = "";
      const listed = async () => {
        out = await rabbitmqctl(["list_connections", "-q", "--no-table-headers", "client_properties"]);
        return out.includes(name);
      };
      await until(listed, `connection ${name} listed by rabbitmqctl`, 30_000);
      const line = out.split("\n").find((l) => l.includes(name)) ?? "";
      for (const cap of [
        "publisher_confirms",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
      ]) {
        expect(line).toContain(cap);
      }
      expect(line).toContain('"product","warren"');
    } finally {
      await conn.close();
    }
  });

  it("a close by the broker (rabbitmqctl close_connection) is ConnectionClosedByBroker 320, recoverable, and rejects pending work", async () => {
    const name = uniqueName("warren-forced");
    const conn = await Connection.open({ url: AMQP_URL, connectionName: name });
    const ch = await conn.openChannel();
    await ch.confirmSelect();
    const closed = new Promise<unknown>((r) => conn.once("close", r));
    const chClosed = new Promise<unknown>((r) => ch.once("close", r));
    expect(await closeConnectionsNamed(name, "test says bye")).toBe(1);
    const err = await closed;
    expect(err).toBeInstanceOf(ConnectionClosedByBroker);
    expect((err as ConnectionClosedByBroker).replyCode).toBe(320);
    expect((err as ConnectionClosedByBroker).recoverable).toBe(true);
    expect((err as Error).message).toContain("test says bye");
    expect(await chClosed).toBeInstanceOf(ConnectionClosedError);
    expect(conn.closeReason).toBe(err);
    // Using the dead connection and channel gives typed errors, not hangs.
    await expect(conn.openChannel()).rejects.toBeInstanceOf(ConnectionClosedError);
    expect(() => ch.basicPublish("", "q", "x")).toThrow(ChannelClosedError);
    await expect(ch.queueDeclare({})).rejects.toBeInstanceOf(ChannelClosedError);
    await conn.close(); // idempotent after a close
  });

  it("an orderly close emits close once with no error and is idempotent", async () => {
    const conn: Connection = await Connection.open(AMQP_URL);
    const events: unknown[] = [];
    conn.on("close", (e) => events.push(e));
    const ch = await conn.openChannel();
    await Promise.all([conn.close(), conn.close()]);
    await conn.close();
    expect(events).toEqual([undefined]);
    expect(ch.state).toBe("closed");
    expect(conn.closeReason).toBeUndefined();
  });

  it("errors are WarrenErrors with a code", async () => {
    const err = await rejection(Connection.open(amqpUrlWith({ vhost: "no-such-vhost-warren" })));
    expect(err).toBeInstanceOf(WarrenError);
    expect((err as WarrenError).code).toBe("VHOST_NOT_ALLOWED");
  });
});
