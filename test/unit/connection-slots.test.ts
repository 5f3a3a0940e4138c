/**
 * A client's connections: the pure rules (which role carries what, names, the client's state as
 * the worst of its connections'), and the slots a client opens, against a port nothing listens on
 * (each connection fails to connect and recovers on its own; no broker needed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { aggregateState, roleFor, slotName } from "../../src/client/slot-state.js";
import { type Client, connect, type StateChange } from "../../src/index.js";
import { type ClientState, CONNECTION_STATES } from "../../src/observability/observers.js";
import { closedPort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";

describe("the rules of a client's connections", () => {
  it("separate: consumers on consume, publishers on publish; single: one shared connection", () => {
    expect(roleFor("consume", "separate")).toBe("consume");
    expect(roleFor("publish", "separate")).toBe("publish");
    expect(roleFor("consume", "single")).toBe("shared");
    expect(roleFor("publish", "single")).toBe("shared");
  });

  it("names: <connectionName>:<role>, the name alone when shared", () => {
    expect(slotName("orders", "consume")).toBe("orders:consume");
    expect(slotName("orders", "publish")).toBe("orders:publish");
    expect(slotName("orders", "shared")).toBe("orders");
    expect(slotName(undefined, "publish")).toBe("warren:publish");
    expect(slotName(undefined, "shared")).toBeUndefined();
  });

  it("the client's state is the worst of its connections'", () => {
    expect(aggregateState([])).toBe("idle");
    expect(aggregateState(["running", "running"])).toBe("running");
    expect(aggregateState(["running", "blocked"])).toBe("blocked");
    expect(aggregateState(["blocked", "recovering"])).toBe("recovering");
    expect(aggregateState(["running", "idle"])).toBe("running"); // a connection about to start hides nothing
    expect(aggregateState(["running", "connecting"])).toBe("connecting");
    expect(aggregateState(["degraded", "recovering"])).toBe("degraded");
    expect(aggregateState(["closed", "closing"])).toBe("closing"); // closed once the last one is
    expect(aggregateState(["closed", "closed"])).toBe("closed");
    expect(aggregateState(["closing", "failed"])).toBe("failed");
  });

  it("property: one of the states given, at least as bad as each, and running only when all run", () => {
    const state = fc.constantFrom(...CONNECTION_STATES);
    fc.assert(
      fc.property(fc.array(state, { minLength: 1, maxLength: 4 }), (states: ClientState[]) => {
        const a = aggregateState(states);
        expect(states).toContain(a);
        for (const s of states) expect(aggregateState([a, s])).toBe(a);
        expect(aggregateState([...states].reverse())).toBe(a);
        if (a === "running") expect(states.every((s) => s === "running" || s === "idle")).toBe(true);
        if (states.includes("failed")) expect(a).toBe("failed");
      }),
    );
  });
});

describe("the connections a client opens (no broker: each one fails to connect and recovers)", () => {
  async function unreachable(options: Parameters<typeof connect>[0] & object = {}): Promise<{
    client: Client;
    changes: StateChange[];
  }> {
    const port = await closedPort();
    const client = connect({
      url: `amqp://guest:guest@127.0.0.1:${port}/`,
      connectionName: "slots",
      reconnect: { initial: 5, max: 20 },
      ...options,
    });
    const changes: StateChange[] = [];
    client.on("state", (c) => changes.push(c));
    return { client, changes };
  }

  it("a client that only consumes opens one connection, the consume one", async () => {
    const { client, changes } = await unreachable();
    client.consume({ queue: "q" }, () => undefined);
    await waitFor(() => changes.some((c) => c.to === "recovering"), "a failed attempt");
    expect(client.connections.map((c) => [c.role, c.name])).toEqual([["consume", "slots:consume"]]);
    expect(new Set(changes.map((c) => c.role))).toEqual(new Set(["consume"]));
    await client.close();
    expect(client.state).toBe("closed");
  });

  it("a client that only publishes opens one connection, the publish one", async () => {
    const { client, changes } = await unreachable();
    const pub = client.publisher();
    await waitFor(() => changes.some((c) => c.to === "recovering"), "a failed attempt");
    expect(client.connections.map((c) => c.role)).toEqual(["publish"]);
    expect(changes.every((c) => c.role === "publish" && c.connection === "slots:publish")).toBe(true);
    await client.close();
    expect(pub.pending).toBe(0);
  });

  it("consumers and publishers: two connections, each supervised on its own; close() closes both", async () => {
    const { client, changes } = await unreachable();
    client.consume({ queue: "q" }, () => undefined);
    client.publisher();
    const recovered = (role: string) =>
      changes.filter((c) => c.role === role && c.to === "recovering").length;
    await waitFor(() => recovered("consume") >= 2 && recovered("publish") >= 2, "both retrying");
    expect(client.connections.map((c) => c.role)).toEqual(["consume", "publish"]);
    // Each connection's transitions are a path of its own, from idle.
    for (const role of ["consume", "publish"]) {
      const mine = changes.filter((c) => c.role === role);
      expect(mine[0]?.from).toBe("idle");
      for (let i = 1; i < mine.length; i++) expect(mine[i]?.from).toBe(mine[i - 1]?.to);
    }
    expect(["connecting", "recovering"]).toContain(client.state);
    expect(client.hostAttempts()[0]?.attempts).toBeGreaterThanOrEqual(4); // both count on the one host
    await client.close();
    expect(client.state).toBe("closed");
    expect(client.connections.map((c) => c.state)).toEqual(["closed", "closed"]);
    expect(changes.filter((c) => c.to === "closed").map((c) => c.role)).toEqual(
      expect.arrayContaining(["consume", "publish"]),
    );
  });

  it('connections: "single": one shared connection named connectionName', async () => {
    const { client, changes } = await unreachable({ connections: "single" });
    client.consume({ queue: "q" }, () => undefined);
    client.publisher();
    await waitFor(() => changes.some((c) => c.to === "recovering"), "a failed attempt");
    expect(client.connections.map((c) => [c.role, c.name])).toEqual([["shared", "slots"]]);
    await client.close();
  });

  it("a client made and left alone opens its consume connection (failures are seen), and ready() waits for it", async () => {
    const { client, changes } = await unreachable();
    await waitFor(() => changes.some((c) => c.to === "recovering"), "a failed attempt");
    expect(client.connections.map((c) => c.role)).toEqual(["consume"]);
    const ready = client.ready({ timeoutMs: 50 });
    await expect(ready).rejects.toThrow(/ready/i);
    await client.close();
    await expect(client.ready()).rejects.toThrow(/closed/);
  });
});
