// Checks the test-support helpers themselves: the promise and polling helpers the other tests
// synchronise with, and, against real brokers, the main node for names, users, vhosts and closing
// connections, an extra node for the memory alarm (raising it on the main node would block
// publishers in test files running at the same time).
import amqp from "amqplib";
import { describe, expect, it } from "vitest";
import { deferred, errorOf, rejection, sleep, within } from "../support/async.js";
import {
  AMQP_URL,
  addUser,
  addVhost,
  amqpUrlWith,
  CommandError,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  deleteUser,
  deleteVhost,
  rabbitmqctl,
  uniqueName,
} from "../support/broker.js";
import { thrown } from "../support/throws.js";
import { nextTurn } from "../support/turn.js";
import { until, waitFor } from "../support/wait.js";

describe("promise helpers", () => {
  it("rejection() gives the reason, and fails when the promise resolves", async () => {
    const boom = new TypeError("boom");
    expect(await rejection(Promise.reject(boom))).toBe(boom);
    const err = await errorOf(rejection(Promise.resolve(1)));
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe("expected a rejection");
  });

  it("errorOf() gives the reason, or undefined when the promise resolves", async () => {
    const boom = new RangeError("boom");
    expect(await errorOf(Promise.reject(boom))).toBe(boom);
    expect(await errorOf(Promise.resolve("fine"))).toBeUndefined();
  });

  it("deferred() resolves with what it is given", async () => {
    const d = deferred<string>();
    d.resolve("done");
    expect(await d.promise).toBe("done");
  });

  it("within() passes a settled value through and names what did not settle in time", async () => {
    expect(await within(Promise.resolve(7), 1000, "a value")).toBe(7);
    const boom = new Error("inner");
    expect(await rejection(within(Promise.reject(boom), 1000, "a failure"))).toBe(boom);
    // Time is the point: a promise that never settles, and a 20 ms limit.
    const err = await rejection(within(new Promise(() => {}), 20, "the never promise"));
    expect((err as Error).message).toBe("the never promise: not settled within 20 ms");
  });

  it("thrown() gives what a call threw, and fails when it returns", () => {
    const boom = new SyntaxError("boom");
    expect(
      thrown(() => {
        throw boom;
      }),
    ).toBe(boom);
    const err = thrown(() => thrown(() => 1));
    expect((err as Error).message).toBe("expected a throw, but the call returned");
  });

  it("nextTurn() resolves after the reactions of promises settled before it", async () => {
    const order: string[] = [];
    void Promise.resolve()
      .then(() => order.push("a"))
      .then(() => order.push("b"))
      .then(() => order.push("c"));
    await nextTurn();
    expect(order).toEqual(["a", "b", "c"]);
  });
});

describe("polling helpers", () => {
  it("waitFor() resolves once the predicate holds, and names what it waited for on timeout", async () => {
    let n = 0;
    const ticker = setInterval(() => {
      n += 1;
    }, 1);
    try {
      await waitFor(() => n >= 3, "three ticks", 5000);
      expect(n).toBeGreaterThanOrEqual(3);
    } finally {
      clearInterval(ticker);
    }
    const err = await rejection(waitFor(() => false, "nothing", 30));
    expect((err as Error).message).toBe("timed out after 30 ms waiting for nothing");
  });

  it("until() polls an async check the same way", async () => {
    let calls = 0;
    await until(
      async () => {
        calls += 1;
        return calls === 3;
      },
      "the third call",
      5000,
    );
    expect(calls).toBe(3);
    const err = await rejection(until(async () => false, "never", 30));
    expect((err as Error).message).toBe("timed out after 30 ms waiting for never");
  });

  it("sleep() waits at least the time it is given", async () => {
    // Time is the point: only a lower bound (the timer may fire late on a loaded machine, never early).
    const t0 = performance.now();
    await sleep(30);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(29);
  });
});

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
    const nobody = uniqueName("nobody");
    const err = await rejection(rabbitmqctl(["delete_user", nobody]));
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).exitCode).not.toBe(0);
    expect((err as CommandError).message).toContain(`delete_user ${nobody} exited with status`);
    expect((err as CommandError).stderr).toMatch(/does not exist/);
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
    // Only the named connection was closed: the other one still answers.
    const ch = await other.createChannel();
    expect((await ch.assertQueue("", { exclusive: true })).queue).toMatch(/^amq\.gen-/);
    await other.close();
  });
});

// The memory-alarm helpers are exercised on an extra node by tls-node.test.ts.
