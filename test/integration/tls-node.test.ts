/**
 * What needs a broker of its own: TLS with certificates made by openssl, SASL EXTERNAL
 * with a client certificate, and connection.blocked from a memory alarm (raised and
 * cleared with rabbitmqctl on that node, so the main broker's other tests never block).
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthenticationError, Connection, HandshakeError, TlsError, WarrenError } from "../../src/index.js";
import { rejection } from "../support/async.js";
import { withMemoryAlarm } from "../support/broker.js";
import { extraNodesSupported, startTlsNode, type TlsNode, tcpAnswers } from "../support/extra-node.js";

describe.skipIf(!extraNodesSupported())("a private RabbitMQ node with TLS", { timeout: 120_000 }, () => {
  let node: TlsNode;

  beforeAll(async () => {
    node = await startTlsNode();
    console.info(
      `${node.nodeName} started in ${node.startMs} ms (TLS ${node.tlsPort}, AMQP ${node.amqpPort})`,
    );
  }, 120_000);

  afterAll(async () => {
    await node?.stop();
  }, 60_000);

  async function roundTrip(conn: Connection): Promise<void> {
    const ch = await conn.openChannel();
    await ch.confirmSelect();
    const { queue } = await ch.queueDeclare({ exclusive: true });
    const body = Buffer.alloc(300_000, 0x5a); // several frames through TLS
    await ch.publish("", queue, body);
    const m = await ch.basicGet({ queue, noAck: true });
    expect(m?.body.equals(body)).toBe(true);
  }

  it("connects over TLS with the CA, verifying the server certificate", async () => {
    const conn = await Connection.open({ url: node.tlsUrl, tls: { ca: node.certs.ca.cert } });
    try {
      expect(conn.address).toMatch(/^amqps:/);
      await roundTrip(conn);
    } finally {
      await conn.close();
    }
  });

  it("takes the CA from an amqps URL (cacertfile)", async () => {
    const conn = await Connection.open(
      `${node.tlsUrl}?cacertfile=${encodeURIComponent(node.certs.ca.certPath)}`,
    );
    await roundTrip(conn);
    await conn.close();
  });

  it("refuses a server certificate it cannot verify: TlsError, not recoverable", async () => {
    const err = await rejection(Connection.open({ url: node.tlsUrl, connectionTimeout: 5000 }));
    expect(err).toBeInstanceOf(TlsError);
    expect((err as TlsError).recoverable).toBe(false);
    expect((err as Error).message).toMatch(/tls\.ca/);
  });

  it("refuses a certificate for another name", async () => {
    const err = await rejection(
      Connection.open({
        url: node.tlsUrl,
        tls: { ca: node.certs.ca.cert, servername: "not-localhost.example" },
      }),
    );
    expect(err).toBeInstanceOf(TlsError);
    expect((err as TlsError).code).toBe("TLS_ERROR");
  });

  it("logs in with SASL EXTERNAL using the client certificate", async ({ skip }) => {
    if (!node.external) skip("rabbitmq_auth_mechanism_ssl is not installed");
    const conn = await Connection.open({
      url: node.tlsUrl.replace(/\/\/[^@]*@/, "//"),
      authMechanism: "EXTERNAL",
      tls: { ca: node.certs.ca.cert, cert: node.certs.client.cert, key: node.certs.client.key },
      connectionName: "warren-external",
    });
    try {
      expect(conn.server?.mechanisms).toContain("EXTERNAL");
      await roundTrip(conn);
      const out = await node.ctl([
        "list_connections",
        "-q",
        "--no-table-headers",
        "user",
        "auth_mechanism",
        "ssl",
      ]);
      expect(out).toMatch(new RegExp(`${node.certUser}\\s+EXTERNAL\\s+true`));
    } finally {
      await conn.close();
    }
  });

  it("EXTERNAL without a client certificate is refused with a typed error", async ({ skip }) => {
    if (!node.external) skip("rabbitmq_auth_mechanism_ssl is not installed");
    const err = await rejection(
      Connection.open({ url: node.tlsUrl, authMechanism: "EXTERNAL", tls: { ca: node.certs.ca.cert } }),
    );
    expect(err).toBeInstanceOf(WarrenError);
    expect(err instanceof AuthenticationError || err instanceof HandshakeError).toBe(true);
    expect((err as WarrenError).recoverable).toBe(false);
  });

  it("connection.blocked: a memory alarm blocks the connection and clearing it unblocks", async () => {
    const conn = await Connection.open(node.url);
    const events: string[] = [];
    conn.on("blocked", (reason) => events.push(`blocked:${reason}`));
    conn.on("unblocked", () => events.push("unblocked"));
    const ch = await conn.openChannel();
    await ch.confirmSelect();
    const { queue } = await ch.queueDeclare({ exclusive: true });
    let confirmedWhileBlocked: Promise<void> | undefined;
    const blocked = new Promise<void>((r) => conn.once("blocked", () => r()));
    await withMemoryAlarm(
      async () => {
        // RabbitMQ blocks a connection when it publishes during an alarm.
        confirmedWhileBlocked = ch.publish("", queue, "during the alarm");
        await blocked;
        expect(conn.isBlocked).toBe(true);
        expect(conn.blockedReason).toMatch(/memory/i);
      },
      { ctl: node.ctl },
    );
    const unblocked = conn.isBlocked
      ? new Promise<void>((r) => conn.once("unblocked", () => r()))
      : undefined;
    await unblocked;
    expect(conn.isBlocked).toBe(false);
    // The publish held back by the alarm goes through once it clears: nothing lost.
    await confirmedWhileBlocked;
    expect((await ch.basicGet({ queue, noAck: true }))?.body.toString()).toBe("during the alarm");
    expect(events[0]).toMatch(/^blocked:/);
    expect(events).toContain("unblocked");
    await conn.close();
  });

  it("the alarm helper restores the watermark even when its callback throws", async () => {
    await expect(
      withMemoryAlarm(
        () => {
          throw new Error("inside");
        },
        { ctl: node.ctl },
      ),
    ).rejects.toThrow("inside");
    const status = JSON.parse(await node.ctl(["status", "--formatter", "json"])) as Record<string, unknown>;
    expect(status["alarms"]).toEqual([]);
  });

  it("stops: ports closed, VM gone, directory removed", async () => {
    await node.stop();
    expect(await tcpAnswers(node.tlsPort)).toBe(false);
    expect(await tcpAnswers(node.amqpPort)).toBe(false);
    expect(() => process.kill(node.pid, 0)).toThrow();
    expect(existsSync(node.dir)).toBe(false);
    await node.stop(); // idempotent
  });
});
