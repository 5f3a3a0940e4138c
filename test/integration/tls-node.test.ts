/**
 * What needs a broker of its own: TLS with certificates made by openssl (trusted, untrusted, a CA
 * that signed something else, another name) and SASL EXTERNAL with a client certificate. Memory
 * and disk alarms have a node of their own: broker-alarms.test.ts.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthenticationError, Connection, TlsError } from "../../src/index.js";
import { rejection, sleep } from "../support/async.js";
import { uniqueName } from "../support/broker.js";
import { makeUnrelatedCa } from "../support/certs.js";
import { errorsOf, useClients } from "../support/clients.js";
import { extraNodesSupported, startTlsNode, type TlsNode, tcpAnswers } from "../support/extra-node.js";
import { StateLog } from "../support/state-log.js";

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
    try {
      expect(conn.address).toMatch(/^amqps:/);
      await roundTrip(conn);
    } finally {
      await conn.close();
    }
  });

  it("refuses a server certificate it cannot verify: TlsError, not recoverable", async () => {
    const err = await rejection(Connection.open({ url: node.tlsUrl, connectionTimeout: 5000 }));
    expect(err).toBeInstanceOf(TlsError);
    expect((err as TlsError).recoverable).toBe(false);
    expect((err as Error).message).toMatch(/tls\.ca/);
  });

  /** The TLS URL with credentials that must never show up in an error (TLS fails before login). */
  function secretUrl(): { url: string; user: string; password: string } {
    const user = uniqueName("tls-user");
    const password = uniqueName("tls-secret");
    return { url: `amqps://${user}:${password}@localhost:${node.tlsPort}/`, user, password };
  }

  function expectNoCredentials(text: string, secret: { user: string; password: string }): void {
    expect(text).not.toContain(secret.password);
    expect(text).not.toContain(secret.user);
    expect(text).not.toContain("amqps://");
  }

  it("refuses a server certificate signed by another CA than the one given: TlsError at once, not recoverable", async () => {
    const otherCa = await makeUnrelatedCa(node.certs.dir);
    expect(otherCa.cert).not.toBe(node.certs.ca.cert);
    const secret = secretUrl();
    const t0 = performance.now();
    const err = await rejection(
      Connection.open({ url: secret.url, tls: { ca: otherCa.cert }, connectionTimeout: 10_000 }),
    );
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(TlsError);
    const tlsError = err as TlsError;
    expect(tlsError.code).toBe("TLS_ERROR");
    expect(tlsError.recoverable).toBe(false);
    // It names the certificate problem and what to do. The broker sends its CA along with its
    // certificate: the chain ends in a self-signed CA the client does not trust.
    expect(tlsError.message).toMatch(/SELF_SIGNED_CERT_IN_CHAIN/);
    expect(tlsError.message).toMatch(/self-signed certificate in certificate chain/);
    expect(tlsError.message).toMatch(/tls\.ca/);
    expect(tlsError.message).toContain(`localhost:${node.tlsPort}`);
    expect((tlsError.cause as { code?: string }).code).toBe("SELF_SIGNED_CERT_IN_CHAIN");
    expectNoCredentials(tlsError.message, secret);
    expectNoCredentials(String(tlsError.stack), secret);
    // Refused by the handshake, not by waiting out the 10 s connection timeout.
    expect(ms).toBeLessThan(5000);
  });

  describe("the supervised client", () => {
    const client = useClients("warren-tls");

    it("with a CA that did not sign the server certificate: fails with TlsError after one attempt, reported once, never retried", async () => {
      const otherCa = await makeUnrelatedCa(node.certs.dir);
      const secret = secretUrl();
      const { client: c } = client({
        url: secret.url,
        tls: { ca: otherCa.cert },
        reconnect: { initial: 10, max: 50 },
      });
      const log = new StateLog(c);
      const errors = errorsOf(c);
      const err = await rejection(c.ready());
      expect(err).toBeInstanceOf(TlsError);
      expect((err as TlsError).recoverable).toBe(false);
      expect((err as TlsError).message).toMatch(/SELF_SIGNED_CERT_IN_CHAIN/);
      expect(c.state).toBe("failed");
      const failed = log.changes.find((x) => x.to === "failed");
      expect(failed?.error).toBe(err);
      expect(errors.map((e) => e.error)).toEqual([err]);
      // With a 10-50 ms backoff a retried fault would have been tried again many times by now.
      await sleep(500);
      expect(log.count("connecting")).toBe(1);
      expect(log.count("recovering")).toBe(0);
      expect(log.states.at(-1)).toBe("failed");
      expect(errors).toHaveLength(1);
      for (const change of log.changes) expectNoCredentials(String(change.error?.message ?? ""), secret);
      expectNoCredentials((err as Error).message, secret);
    });
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
    expect((err as TlsError).recoverable).toBe(false);
    expect((err as TlsError).message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
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
    // RabbitMQ refuses the login (ACCESS_REFUSED, mechanism EXTERNAL): a permanent credentials fault.
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as AuthenticationError).code).toBe("AUTHENTICATION_FAILED");
    expect((err as AuthenticationError).recoverable).toBe(false);
    expect((err as AuthenticationError).message).toMatch(/ACCESS_REFUSED.*EXTERNAL/);
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
