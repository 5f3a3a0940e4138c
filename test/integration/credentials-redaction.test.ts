/**
 * Credentials never appear in what the supervised client shows: a URL carrying a distinctive user
 * and password, pointed at
 *
 * - a closed port (SocketError, connection refused),
 * - a local server that accepts TCP and never answers (ConnectTimeoutError),
 * - a local TLS server whose certificate is not trusted (TlsError),
 * - the real broker, which does not know that user (AuthenticationError),
 *
 * and everything collected: each error's message, String(), stack, own enumerable fields (JSON)
 * and util.inspect() with its causes, from ready(), declare(), a publish, the `state` events
 * (whole payloads) and the `error` events; ReadyTimeoutError.hosts, hostAttempts(), the
 * addresses; the OpenTelemetry spans (an in-memory exporter) and the Prometheus registry's text.
 * The password appears in none of them; the user name only where an error is about that user's
 * login (AuthenticationError, and the errors that carry it), and in `addresses` (URLs with
 * the password masked).
 */
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { inspect } from "node:util";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  type ClientOptions,
  ConnectTimeoutError,
  ReadyTimeoutError,
  SocketError,
  TlsError,
} from "../../src/index.js";
import { FakeServer } from "../fake/server.js";
import { errorOf, within } from "../support/async.js";
import { amqpUrlWith, uniqueName } from "../support/broker.js";
import { makeCerts } from "../support/certs.js";
import { errorsOf, useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { StateLog } from "../support/state-log.js";

const USER = "warren-redact-user";
const PASSWORD = "S3cret-Pa55-xyz";

/** The forms a credential could take in text: as given, percent-encoded, in SASL PLAIN's base64. */
const PASSWORD_FORMS = [
  PASSWORD,
  encodeURIComponent(PASSWORD),
  Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64"),
];

const client = useClients("warren-redaction");
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** amqp[s]://USER:PASSWORD@127.0.0.1:`port`/ */
function urlAt(port: number, scheme: "amqp" | "amqps" = "amqp"): string {
  const url = new URL(amqpUrlWith({ user: USER, password: PASSWORD }));
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return url.toString().replace(/^amqp:/, `${scheme}:`);
}

/** Listens on an ephemeral port of 127.0.0.1; after the test, stops listening and drops every connection. */
async function listening(server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  });
  const address = server.address();
  return typeof address === "object" && address ? address.port : 0;
}

/** One piece of shown text and where it came from. */
interface Shown {
  where: string;
  text: string;
  /** True where naming the user is the point: an error about that user's login. */
  aboutLogin: boolean;
}

/** Whether `err` is, or carries as a cause, an AuthenticationError. */
function isAboutLogin(err: unknown): boolean {
  for (let c: unknown = err; c instanceof Error; c = c.cause)
    if (c instanceof AuthenticationError) return true;
  return false;
}

/** Everything an error shows a log: message, String(), stack, own enumerable fields, inspect (causes too). */
function errorTexts(where: string, err: unknown): Shown[] {
  const e = err as Error;
  const aboutLogin = isAboutLogin(err);
  return [
    ["message", e.message],
    ["String()", String(e)],
    ["stack", e.stack ?? ""],
    ["JSON", JSON.stringify(e) ?? ""],
    ["inspect", inspect(e, { depth: 10 })],
  ].map(([what, text]) => ({ where: `${where} ${what}`, text: text ?? "", aboutLogin }));
}

interface Observed {
  texts: Shown[];
  /** The error of each transition to recovering, degraded or failed. */
  stateErrors: Error[];
  ready: unknown;
}

/**
 * Runs a client with metrics and tracing on `url` until it failed or ready({ timeoutMs }) ran
 * out, with a declare and a publish waiting meanwhile, and collects everything it showed.
 */
async function observe(url: string, options: ClientOptions = {}): Promise<Observed> {
  const registry = new Registry();
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  cleanups.push(() => provider.shutdown());
  const { client: c } = client({
    url,
    metrics: { registry },
    tracing: { tracer: provider.getTracer("warren") },
    connectWaitTimeout: 1500,
    ...options,
  });
  const log = new StateLog(c);
  const events = errorsOf(c);
  const publisher = c.publisher({ publishTimeout: 1500 });
  const waits = {
    ready: errorOf(c.ready({ timeoutMs: 1500 })),
    declare: errorOf(c.declare({ queues: [{ name: uniqueName("warren-redaction") }] })),
    publish: errorOf(publisher.publish({ exchange: "", routingKey: "warren-redaction", body: "x" })),
  };
  const [ready, declare, publish] = await within(
    Promise.all([waits.ready, waits.declare, waits.publish]),
    15_000,
    "ready, declare and publish",
  );
  const texts: Shown[] = [
    ...errorTexts("ready()", ready),
    ...errorTexts("declare()", declare),
    ...errorTexts("publish()", publish),
    ...events.flatMap((e, i) => errorTexts(`error event ${i}`, e.error)),
    ...log.changes.flatMap((ch, i) => [
      ...(ch.error ? errorTexts(`state event ${i} error`, ch.error) : []),
      { where: `state event ${i}`, text: inspect(ch, { depth: 10 }), aboutLogin: isAboutLogin(ch.error) },
      { where: `state event ${i} host`, text: (ch as { host?: string }).host ?? "", aboutLogin: false },
    ]),
    { where: "hostAttempts()", text: JSON.stringify(c.hostAttempts()), aboutLogin: false },
    { where: "addresses", text: JSON.stringify(c.addresses), aboutLogin: true },
    { where: "metrics", text: await registry.metrics(), aboutLogin: false },
    ...exporter.getFinishedSpans().map((s, i) => ({
      where: `span ${i} (${s.name})`,
      text: JSON.stringify({
        name: s.name,
        attributes: s.attributes,
        status: s.status,
        events: s.events,
        links: s.links,
        resource: s.resource.attributes,
      }),
      aboutLogin: false,
    })),
  ];
  if (ready instanceof ReadyTimeoutError) {
    texts.push({ where: "ReadyTimeoutError.hosts", text: JSON.stringify(ready.hosts), aboutLogin: false });
  }
  expect(exporter.getFinishedSpans().length, "the failed publish's span").toBeGreaterThanOrEqual(1);
  expect(publish, "the publish failed").toBeInstanceOf(Error);
  expect(declare, "the declare failed").toBeInstanceOf(Error);
  return { texts, stateErrors: log.changes.flatMap((ch) => (ch.error ? [ch.error] : [])), ready };
}

/** Where `needle` shows, among `texts`. */
function whereShown(texts: Shown[], needles: string[]): string[] {
  return texts.filter((t) => needles.some((n) => t.text.includes(n))).map((t) => t.where);
}

function expectNoCredentials(observed: Observed): void {
  // The search sees what it should: the metrics were collected, the user shows in the addresses.
  expect(observed.texts.find((t) => t.where === "metrics")?.text).toContain("warren_connection_state");
  expect(whereShown(observed.texts, [USER])).toContain("addresses");
  expect(whereShown(observed.texts, PASSWORD_FORMS)).toEqual([]);
  expect(
    whereShown(
      observed.texts.filter((t) => !t.aboutLogin),
      [USER],
    ),
  ).toEqual([]);
}

describe("no credentials in what the client shows", { timeout: 60_000 }, () => {
  let certDir: string;
  let certs: Awaited<ReturnType<typeof makeCerts>>;

  beforeAll(async () => {
    certDir = await mkdtemp(join(tmpdir(), "warren-redaction-"));
    certs = await makeCerts(certDir);
  });

  afterAll(async () => {
    await rm(certDir, { recursive: true, force: true });
  });

  it("connection refused (SocketError)", async () => {
    const observed = await observe(urlAt(await closedPort()));
    expect(observed.stateErrors.length).toBeGreaterThanOrEqual(1);
    for (const e of observed.stateErrors) expect(e).toBeInstanceOf(SocketError);
    expect(observed.ready).toBeInstanceOf(ReadyTimeoutError);
    expectNoCredentials(observed);
  });

  it("a server that accepts and never answers (ConnectTimeoutError)", async () => {
    const silent = await FakeServer.start();
    cleanups.push(() => silent.close());
    const observed = await observe(urlAt(silent.port), { connectionTimeout: 300 });
    expect(observed.stateErrors.length).toBeGreaterThanOrEqual(1);
    for (const e of observed.stateErrors) expect(e).toBeInstanceOf(ConnectTimeoutError);
    expect(observed.ready).toBeInstanceOf(ReadyTimeoutError);
    expectNoCredentials(observed);
  });

  it("a TLS server with an untrusted certificate (TlsError)", async () => {
    const server = createTlsServer({ cert: certs.server.cert, key: certs.server.key }, (socket) => {
      socket.destroy();
    });
    server.on("tlsClientError", () => undefined);
    const observed = await observe(urlAt(await listening(server), "amqps"));
    expect(observed.stateErrors).toHaveLength(1);
    expect(observed.stateErrors[0]).toBeInstanceOf(TlsError);
    expect(observed.ready).toBe(observed.stateErrors[0]);
    expectNoCredentials(observed);
  });

  it("credentials the broker refuses (AuthenticationError, naming the user and not the password)", async () => {
    const observed = await observe(amqpUrlWith({ user: USER, password: PASSWORD }));
    expect(observed.stateErrors).toHaveLength(1);
    const refused = observed.stateErrors[0];
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect(observed.ready).toBe(refused);
    expect(refused?.message).toContain(`user "${USER}"`);
    expectNoCredentials(observed);
  });

  it("a plain TCP listener behind an amqps: URL (the TLS handshake cut: SocketError)", async () => {
    const plain = createTcpServer((socket) => {
      socket.resume();
      socket.end("not TLS\r\n");
    });
    const observed = await observe(urlAt(await listening(plain), "amqps"));
    expect(observed.stateErrors.length).toBeGreaterThanOrEqual(1);
    for (const e of observed.stateErrors) expect(e).toBeInstanceOf(SocketError);
    expectNoCredentials(observed);
  });
});
