// Checks the test-support helpers themselves against real brokers: the main node for names,
// users, vhosts and closing connections, an extra node for the memory alarm (raising it on the
// main node would block publishers in test files running at the same time).
import amqp from "amqplib";
import { describe, expect, it } from "vitest";
import {
  AMQP_URL,
  addUser,
  addVhost,
  amqpUrlWith,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  deleteUser,
  deleteVhost,
  rabbitmqctl,
  uniqueName,
} from "../support/broker.js";

describe("uniqueName", () => {
  it("gives distinct names carrying the prefix and pid", () => {
    const names = new Set(Array.from({ length: 1000 }, () => uniqueName("q")));
    expect(names.size).toBe(1000);
    for (const n of names) expect(n).toMatch(new RegExp(`^q-${process.pid}-\\d+-[0-9a-f]{8}$`));
  });
});

// Every rabbitmqctl call boots an Erlang VM: about 1 s on an idle machine, several under load.
describe.skipIf(!(await canUseRabbitmqctl()))("main node helpers", { timeout: 120_000 }, () => {
  it("runs rabbitmqctl and reports failures with stderr", async () => {
    expect(await rabbitmqctl(["-q", "ping"])).toContain("Ping succeeded");
    await expect(rabbitmqctl(["delete_user", uniqueName("nobody")])).rejects.toThrow(/does not exist/);
  });

  it("adds and deletes users and vhosts", async () => {
    const user = uniqueName("user");
    const vhost = uniqueName("vhost");
    await addVhost(vhost);
    await addUser(user, "s3cret", { vhost });
    try {
      const conn = await amqp.connect(amqpUrlWith({ user, password: "s3cret", vhost }));
      await conn.close();
      // guest was granted access to the new vhost as well
      const guest = await amqp.connect(amqpUrlWith({ vhost }));
      await guest.close();
    } finally {
      await deleteUser(user);
      await deleteVhost(vhost);
    }
    await expect(amqp.connect(amqpUrlWith({ user, password: "s3cret" }))).rejects.toThrow(
      /ACCESS_REFUSED|403/,
    );
    // deleting again is not an error
    await deleteUser(user);
    await deleteVhost(vhost);
  });

  it("force-closes connections by connection_name", async () => {
    const name = uniqueName("conn");
    const conn = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: name } });
    const other = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: `${name}-other` } });
    const closed = new Promise<Error | undefined>((resolve) => {
      conn.on("error", () => {});
      conn.on("close", (err?: Error) => resolve(err));
    });
    expect(await closeConnectionsNamed(name, "helper test")).toBe(1);
    const err = await closed;
    expect(String(err?.message)).toMatch(/CONNECTION_FORCED.*helper test/);
    expect(await closeConnectionsNamed(uniqueName("absent"), "x", { waitMs: 0 })).toBe(0);
    await other.close();
  });
});

// The memory-alarm helpers are exercised on an extra node by tls-node.test.ts.
