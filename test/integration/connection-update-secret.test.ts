/**
 * `conn.updateSecret(newSecret, reason)`: RabbitMQ's connection.update-secret extension (a
 * refreshed OAuth 2 token on an open connection).
 *
 * - Against the real broker, with a user of its own: after `rabbitmqctl change_password`, the
 *   new password sent as the secret gets connection.update-secret-ok and the connection goes on
 *   working. updateSecret() returns nothing and the ok is consumed silently, so what is observed
 *   is the 12 bytes of that frame arriving (heartbeats off: nothing else comes) and the connection
 *   still open and usable afterwards.
 * - A wrong secret: RabbitMQ asks only the auth backends whose state can expire
 *   (rabbit_access_control:update_state/2); the internal backend's cannot, so the secret is not
 *   checked at all: update-secret-ok again, the connection stays open.
 * - A refused secret, as RabbitMQ answers when a backend that checks (OAuth 2) refuses it:
 *   connection.close 530 NOT_ALLOWED "New secret was refused by one of the backends". The real
 *   broker will not do that with its internal backend, so a scripted fake server plays it: the
 *   connection closes with ConnectionClosedByBroker (530, not recoverable), without the secret.
 * - The supervised client has no updateSecret of its own. Through its `connection` escape hatch
 *   the live connection takes the new secret, but a recovery logs in again with the password
 *   the client was created with.
 */
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  Connection,
  ConnectionClosedByBroker,
  ConnectionClosedError,
  type ConnectionError,
} from "../../src/index.js";
import { FakeServer } from "../fake/server.js";
import {
  addUser,
  amqpUrlWith,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  deleteUser,
  rabbitmqctl,
  uniqueName,
} from "../support/broker.js";
import { errorsOf, useClients } from "../support/clients.js";
import { StateLog } from "../support/state-log.js";
import { waitFor } from "../support/wait.js";

/** connection.update-secret-ok on the wire: frame header (7), class and method ids (4), frame end (1). */
const UPDATE_SECRET_OK_BYTES = 12;

/** Users need rabbitmqctl (add_user, change_password); the fake-server test runs without it. */
const ctlUsable = await canUseRabbitmqctl();
const NEEDS_CTL = "(needs rabbitmqctl for its own user)";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** A user of the test's own with `password`, deleted after the test. */
async function userWith(password: string): Promise<string> {
  const user = uniqueName("warren-update-secret");
  await addUser(user, password);
  cleanups.push(() => deleteUser(user));
  return user;
}

/** Opens a connection (heartbeats off: nothing arrives unasked), closed after the test. */
async function open(url: string): Promise<Connection> {
  const conn = await Connection.open({
    url,
    heartbeat: 0,
    connectionName: uniqueName("warren-update-secret"),
  });
  cleanups.push(() => conn.close());
  return conn;
}

/** Sends the secret and resolves with the bytes received until the reply came. */
async function update(conn: Connection, secret: string, reason: string): Promise<number> {
  const before = conn.bytesReceived;
  conn.updateSecret(secret, reason);
  await waitFor(
    () => conn.bytesReceived - before >= UPDATE_SECRET_OK_BYTES || !conn.isOpen,
    "the reply to connection.update-secret",
  );
  return conn.bytesReceived - before;
}

/** The connection still does a round trip: a channel, a server-named exclusive queue. */
async function roundTrip(conn: Connection): Promise<string> {
  const ch = await conn.openChannel();
  const { queue } = await ch.queueDeclare({ exclusive: true });
  await ch.close();
  return queue;
}

/** Everything an error shows a log: message, String(), stack, own enumerable fields, inspect (with causes). */
function shown(err: unknown): string {
  const e = err as Error;
  return [e.message, String(e), e.stack ?? "", JSON.stringify(e), inspect(e, { depth: 10 })].join("\n");
}

// Every rabbitmqctl call boots an Erlang VM: about 1 s on an idle machine, several under load.
describe("conn.updateSecret() against RabbitMQ", { timeout: 90_000 }, () => {
  it.skipIf(!ctlUsable)(
    `the changed password: update-secret-ok comes back, the connection stays open and works ${NEEDS_CTL}`,
    async () => {
      const oldPassword = uniqueName("old-pw");
      const newPassword = uniqueName("new-pw");
      const user = await userWith(oldPassword);
      const conn = await open(amqpUrlWith({ user, password: oldPassword }));
      const closes: (ConnectionError | undefined)[] = [];
      conn.on("close", (e) => closes.push(e));

      await rabbitmqctl(["change_password", user, newPassword]);
      const received = await update(conn, newPassword, "password rotated");

      expect(received).toBe(UPDATE_SECRET_OK_BYTES);
      expect(conn.isOpen).toBe(true);
      expect(closes).toEqual([]);
      expect(await roundTrip(conn)).toMatch(/^amq\.gen-/);
      // The change was real: the old password no longer logs in, the new one does.
      const refused = await Connection.open(amqpUrlWith({ user, password: oldPassword })).then(
        (c) => c.close().then(() => undefined),
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(AuthenticationError);
      const fresh = await open(amqpUrlWith({ user, password: newPassword }));
      expect(fresh.isOpen).toBe(true);
    },
  );

  it.skipIf(!ctlUsable)(
    `a wrong secret: the internal backend does not check it, update-secret-ok and the connection stays open ${NEEDS_CTL}`,
    async () => {
      const password = uniqueName("pw");
      const user = await userWith(password);
      const conn = await open(amqpUrlWith({ user, password }));
      const closes: (ConnectionError | undefined)[] = [];
      conn.on("close", (e) => closes.push(e));

      const received = await update(conn, uniqueName("not-the-password"), "a wrong secret");

      expect(received).toBe(UPDATE_SECRET_OK_BYTES);
      expect(conn.isOpen).toBe(true);
      expect(closes).toEqual([]);
      expect(await roundTrip(conn)).toMatch(/^amq\.gen-/);
    },
  );
});

describe("a refused secret (scripted: RabbitMQ's answer when a checking backend refuses it)", () => {
  it("the connection closes with ConnectionClosedByBroker 530, not recoverable, without the secret; later calls throw ConnectionClosedError", async () => {
    const secret = `token-${uniqueName("refused")}`;
    const fake = await FakeServer.start(async (peer) => {
      peer.answer("connection.update-secret", () => ({
        name: "connection.close",
        args: {
          replyCode: 530,
          replyText: "NOT_ALLOWED - New secret was refused by one of the backends",
          classId: 10,
          methodId: 70,
        },
      }));
      await peer.handshake({ heartbeat: 0 });
    });
    cleanups.push(() => fake.close());
    const conn = await Connection.open({ port: fake.port, heartbeat: 0 });
    cleanups.push(() => conn.close());
    const closes: (ConnectionError | undefined)[] = [];
    conn.on("close", (e) => closes.push(e));

    conn.updateSecret(secret, "token refreshed");
    await conn.whenClosed();

    const peer = await fake.peer();
    const sent = await peer.method("connection.update-secret");
    expect(sent.newSecret.toString()).toBe(secret);
    expect(sent.reason).toBe("token refreshed");
    await peer.method("connection.close-ok");
    expect(fake.errors).toEqual([]);

    expect(closes).toHaveLength(1);
    const err = closes[0];
    expect(err).toBeInstanceOf(ConnectionClosedByBroker);
    const closed = err as ConnectionClosedByBroker;
    expect(closed.replyCode).toBe(530);
    expect(closed.methodName).toBe("connection.update-secret");
    expect(closed.recoverable).toBe(false);
    expect(closed.message).toContain("New secret was refused");
    expect(conn.closeReason).toBe(err);
    expect(shown(err)).not.toContain(secret);

    let later: unknown;
    try {
      conn.updateSecret(secret, "again");
    } catch (e) {
      later = e;
    }
    expect(later).toBeInstanceOf(ConnectionClosedError);
    expect(shown(later)).not.toContain(secret);
  });
});

describe("the supervised client", { timeout: 90_000 }, () => {
  const client = useClients("warren-update-secret");

  it.skipIf(!ctlUsable)(
    `has no updateSecret: through client.connection the live connection takes it, a recovery logs in with the password given to connect() ${NEEDS_CTL}`,
    async () => {
      const oldPassword = uniqueName("old-pw");
      const newPassword = uniqueName("new-pw");
      const user = await userWith(oldPassword);
      // One connection: the one client.connection gives is the one that publishes (a second one,
      // opened later, would log in with the password given to connect(), as a recovery does).
      const { client: c, name } = client({
        url: amqpUrlWith({ user, password: oldPassword }),
        heartbeat: 0,
        connections: "single",
      });
      const log = new StateLog(c);
      const errors = errorsOf(c);
      await c.ready();
      expect("updateSecret" in c).toBe(false);

      await rabbitmqctl(["change_password", user, newPassword]);
      const conn = c.connection as Connection;
      const received = await update(conn, newPassword, "password rotated");
      expect(received).toBe(UPDATE_SECRET_OK_BYTES);
      await c.publish("", uniqueName("nowhere"), "after the update");
      expect(c.state).toBe("running");

      const mark = log.changes.length;
      expect(await closeConnectionsNamed(name, "forced by test")).toBe(1);
      const failed = await log.next("failed", mark, 20_000);

      expect(failed.error).toBeInstanceOf(AuthenticationError);
      expect(errors).toHaveLength(1);
      expect(errors[0]?.error).toBe(failed.error);
      for (const text of [shown(failed.error), ...log.changes.map((ch) => inspect(ch, { depth: 10 }))]) {
        expect(text).not.toContain(oldPassword);
        expect(text).not.toContain(newPassword);
      }
    },
  );
});
