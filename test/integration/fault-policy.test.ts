/**
 * The fault policy against the real broker (faults.ts): transient faults are retried and told,
 * permanent ones fail at once; ready({ timeoutMs }) bounds start-up; state events name their host
 * and carry only the error that caused them.
 */
import { afterAll, describe, expect, it } from "vitest";
import {
  type Client,
  type ClientOptions,
  ConnectionLimitError,
  ReadyTimeoutError,
  SocketError,
  type StateChange,
} from "../../src/index.js";
import { rejection } from "../support/async.js";
import {
  AMQP_URL,
  addVhost,
  amqpUrlWith,
  canUseRabbitmqctl,
  deleteVhost,
  rabbitmqctl,
  uniqueName,
} from "../support/broker.js";
import { errorsOf, useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";

const clients = useClients("warren-faults");
/** A client (closed after the test) with its state changes and error events, from the first. */
function client(options: ClientOptions): {
  client: Client;
  changes: StateChange[];
  errors: { error: Error; at: number }[];
} {
  const { client: c } = clients(options);
  const changes: StateChange[] = [];
  // Attached on the line after connect(): the first transition is seen too.
  c.on("state", (change) => changes.push(change));
  return { client: c, changes, errors: errorsOf(c) };
}

const PASSWORD = "s3cret-Pa55";

describe("ready({ timeoutMs }) and state events", () => {
  it("ready({ timeoutMs: 2000 }) with only a closed port: rejected in about 2 s, naming the host and its error; the client keeps trying", async () => {
    const port = await closedPort();
    const { client: c } = client({ url: `amqp://guest:${PASSWORD}@127.0.0.1:${port}/` });
    const t0 = performance.now();
    const err = await rejection(c.ready({ timeoutMs: 2000 }));
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(ReadyTimeoutError);
    const e = err as ReadyTimeoutError;
    expect(e.code).toBe("READY_TIMEOUT");
    expect(e.recoverable).toBe(true);
    // Not before the 2 s asked for; the upper bound (4×) tells the timeout from a hang.
    expect(took).toBeGreaterThanOrEqual(1_990);
    expect(took).toBeLessThan(8_000);
    expect(e.hosts).toHaveLength(1);
    expect(e.hosts[0]?.host).toBe(`127.0.0.1:${port}`);
    expect(e.hosts[0]?.attempts).toBeGreaterThanOrEqual(2);
    expect(e.hosts[0]?.lastError).toMatch(/SocketError: .*ECONNREFUSED/);
    expect(e.message).toContain(`127.0.0.1:${port}`);
    expect(e.message).not.toContain(PASSWORD);
    // Still trying: not failed.
    expect(["recovering", "connecting", "handshaking"]).toContain(c.state);
    await c.close();
    expect(c.state).toBe("closed");
  });

  it("ready({ timeoutMs }) resolves as ready() when the broker answers in time", async () => {
    const { client: c } = client({ url: AMQP_URL });
    await c.ready({ timeoutMs: 10_000 });
    expect(c.state).toBe("running");
  });

  it("every state event names its host and carries only the error that caused it; a listener attached after connect() sees the first transition", async () => {
    const port = await closedPort();
    const good = new URL(AMQP_URL);
    const { client: c, changes } = client({
      urls: [`amqp://guest:${PASSWORD}@127.0.0.1:${port}/`, AMQP_URL],
      reconnect: { initial: 10, max: 50 },
    });
    await c.ready({ timeoutMs: 10_000 });
    const bad = `127.0.0.1:${port}`;
    const ok = `${good.hostname}:${good.port || "5672"}`;
    expect(changes[0]).toMatchObject({ from: "idle", to: "connecting", host: bad, error: undefined });
    const failed = changes.find((ch) => ch.to === "recovering");
    expect(failed?.host).toBe(bad);
    expect(failed?.error).toBeInstanceOf(SocketError);
    // The next attempt, on the other host: no stale error from the first one.
    const after = changes.slice(changes.indexOf(failed as StateChange) + 1);
    expect(after.map((ch) => ch.to)).toEqual(["connecting", "handshaking", "restoring", "running"]);
    for (const ch of after) {
      expect(ch.host).toBe(ok);
      expect(ch.error).toBeUndefined();
    }
    const text = JSON.stringify(changes.map((ch) => ({ ...ch, error: ch.error?.message })));
    expect(text).not.toContain(PASSWORD);
  });

  it("a host name that does not resolve is reported at once (error event) and retried, not fatal", async () => {
    const {
      client: c,
      errors,
      changes,
    } = client({
      url: "amqp://guest:guest@no-such-host.invalid:5672/",
      reconnect: { initial: 50, max: 200 },
    });
    await waitFor(() => errors.length > 0, "the reported DNS failure", 10_000);
    expect(errors[0]?.error).toBeInstanceOf(SocketError);
    expect(errors[0]?.error.message).toMatch(/ENOTFOUND|EAI_AGAIN/);
    expect(errors[0]?.error.message).toContain("no-such-host.invalid:5672");
    // Rate-limited: several attempts, at most one report per 5 s (however long the attempts took).
    const attempts = () => changes.filter((ch) => ch.to === "recovering").length;
    await waitFor(() => attempts() >= 4, "four attempts", 15_000);
    const window = performance.now() - errors[0]!.at;
    expect(errors.length).toBeLessThanOrEqual(1 + Math.floor(window / 5_000));
    expect(errors.length).toBeLessThan(attempts());
    for (const e of errors) expect(e.error).toBeInstanceOf(SocketError);
    expect(c.state).not.toBe("failed");
    await c.close();
  });
});

const usable = await canUseRabbitmqctl();

describe.skipIf(!usable)("530 over a connection limit is transient (needs rabbitmqctl)", () => {
  const vhost = uniqueName("warren-limit-vhost");

  afterAll(async () => {
    await deleteVhost(vhost);
  });

  it("a vhost with max-connections 1: a second client waits, reports the limit, and connects within seconds of the first closing", async () => {
    await addVhost(vhost);
    await rabbitmqctl(["set_vhost_limits", "-p", vhost, '{"max-connections": 1}']);
    const url = amqpUrlWith({ vhost });
    const first = client({ url });
    await first.client.ready({ timeoutMs: 10_000 });
    const second = client({ url });
    await waitFor(() => second.errors.length > 0, "the limit to be reported", 10_000);
    const reported = second.errors[0]?.error;
    expect(reported).toBeInstanceOf(ConnectionLimitError);
    expect((reported as ConnectionLimitError).code).toBe("CONNECTION_LIMIT");
    expect((reported as ConnectionLimitError).recoverable).toBe(true);
    expect((reported as ConnectionLimitError).replyCode).toBe(530);
    expect(reported?.message).toMatch(/connection limit/);
    // It keeps trying, each refusal in a state event; not failed.
    await waitFor(
      () => second.changes.filter((ch) => ch.error instanceof ConnectionLimitError).length >= 2,
      "two refusals",
      10_000,
    );
    expect(second.client.state).not.toBe("failed");
    const closedAt = performance.now();
    await first.client.close();
    await second.client.ready({ timeoutMs: 20_000 });
    const waited = performance.now() - closedAt;
    console.info(`[faults] connected ${Math.round(waited)} ms after the first client closed`);
    // At most one capped backoff (2 s by default) and an attempt; 5× that for a loaded machine.
    expect(waited).toBeLessThan(10_000);
    expect(second.client.state).toBe("running");
    await second.client.close();
  });
});
