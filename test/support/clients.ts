/**
 * Supervised clients for the tests: each with a unique connection name (so rabbitmqctl can find
 * it), closed after every test of the file that asked for them, and recorders of their errors.
 */
import { afterEach } from "vitest";
import { type Client, type ClientOptions, connect } from "../../src/index.js";
import { AMQP_URL, uniqueName } from "./broker.js";

export interface TestClient {
  client: Client;
  /** The connection name (connectionName), unique per client. */
  name: string;
}

/**
 * Registers an afterEach that closes the clients made by the returned factory, and returns it.
 * `defaults` apply to every client (the test's options win); call at the top of a test file or
 * describe block.
 */
export function useClients(
  prefix: string,
  defaults: ClientOptions = {},
): (options?: ClientOptions) => TestClient {
  const open: Client[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close().catch(() => undefined)));
  });
  return (options = {}) => {
    const name = options.connectionName ?? uniqueName(prefix);
    const client = connect({ url: AMQP_URL, ...defaults, ...options, connectionName: name });
    open.push(client);
    return { client, name };
  };
}

/** Every error event of a client or consumer, with its time (performance.now()). */
export function errorsOf(source: { on(event: "error", fn: (e: Error) => void): unknown }): {
  error: Error;
  at: number;
}[] {
  const out: { error: Error; at: number }[] = [];
  source.on("error", (error) => out.push({ error, at: performance.now() }));
  return out;
}
