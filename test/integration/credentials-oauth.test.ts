/**
 * connect({ credentials }) against a private RabbitMQ node that logs in with OAuth 2.0 tokens
 * (rabbitmq_auth_backend_oauth2, a symmetric HS256 key): short-lived JWTs are the password.
 *
 * RabbitMQ 3.10 keeps a connection whose token expired but refuses its operations (403 on each
 * publish), so "no reconnect and nothing lost through four expiries" shows the refresh
 * (connection.update-secret) really took each time.
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ChannelClosedByBroker,
  type Client,
  Connection,
  type Credentials,
  type CredentialsChange,
  CredentialsError,
} from "../../src/index.js";
import { closeConnectionsNamed, uniqueName } from "../support/broker.js";
import { errorsOf, useClients } from "../support/clients.js";
import { extraNodesSupported, pluginAvailable } from "../support/extra-node.js";
import { type OauthNode, signToken, startOauthNode } from "../support/oauth-node.js";
import { StateLog } from "../support/state-log.js";
import { waitFor } from "../support/wait.js";

const usable = extraNodesSupported() && pluginAvailable("rabbitmq_auth_backend_oauth2");

/** A provider of signed tokens living `ttlSeconds`, recording each token it gave. */
function tokenProvider(key: () => Buffer, ttlSeconds: number) {
  const given: string[] = [];
  const provider = async (): Promise<Credentials> => {
    const { token, expiresAt } = signToken(key(), { ttlSeconds });
    given.push(token);
    return { username: "", password: token, expiresAt };
  };
  return { provider, given };
}

/** The credentials events of a client. */
function credentialEvents(c: Client): CredentialsChange[] {
  const out: CredentialsChange[] = [];
  c.on("credentials", (change) => out.push(change));
  return out;
}

async function counterValue(registry: Registry, outcome: string): Promise<number> {
  const m = await registry.getSingleMetric("warren_credential_refreshes_total")?.get();
  return m?.values.find((v) => v.labels["outcome"] === outcome)?.value ?? 0;
}

describe.skipIf(!usable)(
  "credentials from a provider, against an OAuth 2.0 node",
  { timeout: 180_000 },
  () => {
    let node: OauthNode;
    const client = useClients("warren-oauth");

    beforeAll(async () => {
      node = await startOauthNode();
      console.info(`${node.nodeName} started in ${node.startMs} ms (AMQP ${node.amqpPort})`);
    }, 120_000);

    afterAll(async () => {
      await node?.stop();
    }, 60_000);

    it("publishes and consumes for 40 s through 4 expiries of 10 s tokens: refreshed on the open connection, no reconnect, nothing lost", async () => {
      const { provider, given } = tokenProvider(() => node.key, 10);
      const registry = new Registry();
      // One connection: the counts below (tokens asked for = refreshes + 1, four states) are one
      // connection's.
      const { client: c } = client({
        url: node.bareUrl,
        credentials: provider,
        metrics: { registry },
        connections: "single",
      });
      const log = new StateLog(c);
      const errors = errorsOf(c);
      const changes = credentialEvents(c);
      await c.ready();
      const first = c.connection as Connection;
      const queue = uniqueName("oauth-q");
      await c.declare({ queues: [{ name: queue, durable: false, exclusive: false, autoDelete: false }] });
      const received = new Set<string>();
      const consumer = c.consume({ queue, prefetch: 100 }, (m) => {
        received.add(m.body.toString());
      });
      await consumer.ready();

      const confirmed = new Set<string>();
      const failed: unknown[] = [];
      const pending: Promise<void>[] = [];
      const started = Date.now();
      let n = 0;
      while (Date.now() - started < 40_000) {
        const body = `m-${n++}`;
        pending.push(
          c.publish("", queue, body).then(
            () => void confirmed.add(body),
            (e: unknown) => void failed.push(e),
          ),
        );
        await new Promise((r) => setTimeout(r, 20));
      }
      await Promise.all(pending);
      await waitFor(() => received.size >= confirmed.size, "every confirmed message consumed", 20_000);
      const lost = [...confirmed].filter((b) => !received.has(b));
      const oks = changes.filter((ch) => ch.outcome === "ok").length;
      console.info(
        `40 s: ${n} published, ${confirmed.size} confirmed, ${received.size} received, ${lost.length} lost, ${failed.length} failed; ` +
          `${given.length} tokens asked for, ${oks} refreshes; states ${log.states.join(" ")}`,
      );

      expect(failed).toEqual([]);
      expect(confirmed.size).toBe(n);
      expect(lost).toEqual([]);
      expect(c.connection).toBe(first); // the same connection all along
      expect(log.count("recovering")).toBe(0);
      expect(log.states).toEqual(["connecting", "handshaking", "restoring", "running"]);
      expect(errors).toEqual([]);
      // Tokens of 10 s, refreshed half-way: at least 4 expiries' worth of refreshes, each one taken.
      expect(oks).toBeGreaterThanOrEqual(4);
      expect(changes.every((ch) => ch.outcome === "ok")).toBe(true);
      expect(given.length).toBe(oks + 1);
      expect(await counterValue(registry, "ok")).toBe(oks);
      const last = changes.at(-1)?.expiresAt ?? 0;
      expect(last).toBeGreaterThan(Date.now());
      expect(JSON.stringify(changes)).not.toContain(given.at(-1));
    });

    it("control: the broker refuses a publish on a connection whose token expired (what the refresh prevents)", async () => {
      const { token } = signToken(node.key, { ttlSeconds: 3 });
      const conn = await Connection.open({ url: node.bareUrl, username: "", password: token, heartbeat: 0 });
      try {
        const ch = await conn.openChannel();
        await ch.confirmSelect();
        const { queue } = await ch.queueDeclare({ exclusive: true });
        await ch.publish("", queue, "before the expiry");
        await new Promise((r) => setTimeout(r, 4500));
        const error = await ch.publish("", queue, "after the expiry").catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ChannelClosedByBroker);
        expect((error as ChannelClosedByBroker).replyCode).toBe(403);
        expect((error as Error).message).toMatch(/expired/);
        expect((error as Error).message).not.toContain(token);
        expect(conn.isOpen).toBe(true); // RabbitMQ 3.10 keeps the connection, refusing its operations
      } finally {
        await conn.close();
      }
    });

    it("after its connection is closed by the broker, it reconnects with a fresh token from the provider", async () => {
      const { provider, given } = tokenProvider(() => node.key, 60);
      const { client: c, name } = client({ url: node.bareUrl, credentials: provider });
      const log = new StateLog(c);
      await c.ready();
      expect(given).toHaveLength(1);
      const first = c.connection as Connection;
      expect(first.options.password).toBe(given[0]);

      const mark = log.changes.length;
      expect(await closeConnectionsNamed(`${name}:consume`, "closed by test", { ctl: node.ctl })).toBe(1);
      await log.next("running", mark, 30_000);

      expect(log.statesSince(mark)).toEqual([
        "recovering",
        "connecting",
        "handshaking",
        "restoring",
        "running",
      ]);
      expect(given).toHaveLength(2);
      expect(given[1]).not.toBe(given[0]);
      const second = c.connection as Connection;
      expect(second).not.toBe(first);
      expect(second.options.password).toBe(given[1]);
      await c.publish("", uniqueName("nowhere"), "after the reconnect");
    });

    it("a provider that throws: CredentialsError, transient: retried with backoff, seen as state, error event, credentials event and metric; then connects", async () => {
      let failures = 3;
      const { provider: good, given } = tokenProvider(() => node.key, 60);
      const provider = async (): Promise<Credentials> => {
        if (failures-- > 0) throw new Error("token endpoint unavailable (503)");
        return good();
      };
      const registry = new Registry();
      const { client: c } = client({
        url: node.bareUrl,
        credentials: provider,
        metrics: { registry },
        reconnect: { initial: 50, max: 200 },
      });
      const log = new StateLog(c);
      const errors = errorsOf(c);
      const changes = credentialEvents(c);
      await c.ready({ timeoutMs: 20_000 });

      const recovering = log.changes.filter((ch) => ch.to === "recovering");
      expect(recovering).toHaveLength(3);
      for (const r of recovering) {
        expect(r.error).toBeInstanceOf(CredentialsError);
        expect((r.error as CredentialsError).reason).toBe("provider");
        expect((r.error as CredentialsError).recoverable).toBe(true);
        expect(r.error?.message).toContain("token endpoint unavailable (503)");
      }
      expect(errors.length).toBeGreaterThanOrEqual(1); // rate-limited: the same fault once per 5 s
      expect(errors[0]?.error).toBeInstanceOf(CredentialsError);
      expect(changes.map((ch) => ch.outcome)).toEqual(["provider_error", "provider_error", "provider_error"]);
      expect(await counterValue(registry, "provider_error")).toBe(3);
      expect(c.state).toBe("running");
      expect(given).toHaveLength(1);
    });

    it("a wrong-signed token: refused, asked for once more, refused again: AuthenticationError, failed", async () => {
      const wrongKey = Buffer.alloc(32, 7);
      const { provider, given } = tokenProvider(() => wrongKey, 60);
      const registry = new Registry();
      const { client: c } = client({ url: node.bareUrl, credentials: provider, metrics: { registry } });
      const log = new StateLog(c);
      const errors = errorsOf(c);
      const error = await c.ready().catch((e: unknown) => e);

      expect(error).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).recoverable).toBe(false);
      expect(c.state).toBe("failed");
      expect(given).toHaveLength(2); // the first login and the single retry
      expect(log.count("recovering")).toBe(0);
      expect(await counterValue(registry, "refused")).toBe(1);
      expect(errors.map((e) => e.error)).toEqual([error]);
      for (const token of given)
        expect(String((error as Error).stack) + (error as Error).message).not.toContain(token);
    });

    it("a malformed answer (a JWT's exp in seconds): CredentialsError, permanent, failed at once", async () => {
      const { provider: good } = tokenProvider(() => node.key, 60);
      const provider = async (): Promise<Credentials> => {
        const creds = await good();
        return { ...creds, expiresAt: Math.floor(Number(creds.expiresAt) / 1000) };
      };
      const { client: c } = client({ url: node.bareUrl, credentials: provider });
      const error = await c.ready().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CredentialsError);
      expect((error as CredentialsError).reason).toBe("malformed");
      expect((error as Error).message).toMatch(/in seconds/);
      expect(c.state).toBe("failed");
    });

    it("a refreshed token the broker refuses: the connection closes, and the client logs in again with a new token", async () => {
      let calls = 0;
      const given: string[] = [];
      const provider = async (): Promise<Credentials> => {
        calls++;
        // The second answer (the first refresh) is signed with another key: update-secret is refused.
        const { token, expiresAt } = signToken(calls === 2 ? Buffer.alloc(32, 9) : node.key, {
          ttlSeconds: 6,
        });
        given.push(token);
        return { username: "", password: token, expiresAt };
      };
      const { client: c } = client({
        url: node.bareUrl,
        credentials: provider,
        reconnect: { initial: 50, max: 200 },
      });
      const log = new StateLog(c);
      const changes = credentialEvents(c);
      await c.ready();
      const mark = log.changes.length;
      const recovering = await log.next("recovering", mark, 20_000);
      await log.next("running", mark, 20_000);

      expect(recovering.error).toBeInstanceOf(CredentialsError);
      const refused = recovering.error as CredentialsError;
      expect(refused.reason).toBe("refused");
      expect(refused.message).toMatch(/530/);
      expect(changes.map((ch) => ch.outcome)).toContain("refused");
      expect(calls).toBeGreaterThanOrEqual(3);
      expect((c.connection as Connection).options.password).toBe(given[2]);
      for (const token of given) expect(refused.message).not.toContain(token);
      await c.publish("", uniqueName("nowhere"), "after the new login");
    });
  },
);
