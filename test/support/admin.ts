/**
 * "The other service" of an integration test: a plain connection of its own that declares and
 * deletes queues and publishes with confirms, and the cleanup of the queues a test named.
 */
import { afterAll, afterEach, beforeAll } from "vitest";
import { type Channel, Connection } from "../../src/index.js";
import { AMQP_URL, uniqueName } from "./broker.js";

export interface Admin {
  /** The admin connection (open from beforeAll to afterAll). */
  readonly conn: Connection;
  /** A channel in confirm mode on it, for publishing the test's input. */
  readonly pub: Channel;
  /** A unique queue name, deleted after the test (whether or not anyone declared it). */
  queueName(prefix: string): string;
  /** A server-named exclusive queue, gone with the admin connection. */
  freshQueue(args?: Record<string, number | string>): Promise<string>;
}

/** Opens the admin connection for the file and deletes the named queues after each test. */
export function useAdmin(): Admin {
  let conn: Connection | undefined;
  let pub: Channel | undefined;
  const queues: string[] = [];
  beforeAll(async () => {
    conn = await Connection.open(AMQP_URL);
    pub = await conn.openChannel();
    await pub.confirmSelect();
  });
  afterEach(async () => {
    if (!conn || queues.length === 0) return;
    const ch = await conn.openChannel();
    for (const queue of queues.splice(0)) {
      if (!ch.isOpen) break;
      await ch.queueDelete({ queue }).catch(() => undefined);
    }
    if (ch.isOpen) await ch.close();
  });
  afterAll(async () => {
    await conn?.close();
  });
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error("the admin connection is opened in beforeAll");
    return v;
  };
  return {
    get conn() {
      return need(conn);
    },
    get pub() {
      return need(pub);
    },
    queueName(prefix) {
      const name = uniqueName(prefix);
      queues.push(name);
      return name;
    },
    async freshQueue(args) {
      return (await need(pub).queueDeclare({ exclusive: true, ...(args ? { arguments: args } : {}) })).queue;
    },
  };
}
