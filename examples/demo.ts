/**
 * The demo service: declares its topology, publishes a steady stream with
 * publisher confirms, consumes it with manual acks, and prints a live status
 * line. Stops cleanly on Ctrl-C (SIGINT/SIGTERM) or after --duration seconds.
 *
 *   npm start                          run until Ctrl-C
 *   npm start -- --duration 10         run for 10 s
 *   npm start -- --rate 2000           target publishes per second (default 1000)
 *   npm start -- --http-port 9100      serve the status page, probes and metrics there
 *                                      (default 9464; 0: off; --metrics-port is the same)
 *   npm start -- --connection-name x   the connection's name on the broker (default warren-demo),
 *                                      so that a test can close its own demo's connection
 *   AMQP_URL=amqp://u:p@host/vhost npm start
 */
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import {
  type Client,
  connect,
  redactUrl,
  type StatusServer,
  serveStatus,
  WarrenError,
} from "../src/index.js";

const USAGE =
  "usage: npm start -- [--duration seconds] [--rate msgs/s] [--size bytes] [--http-port port (0: off)]\n" +
  "       [--connection-name name (default warren-demo)]";

function parse() {
  try {
    return parseArgs({
      options: {
        duration: { type: "string" },
        rate: { type: "string", default: "1000" },
        size: { type: "string", default: "256" },
        "http-port": { type: "string" },
        "metrics-port": { type: "string" },
        "connection-name": { type: "string", default: "warren-demo" },
      },
    }).values;
  } catch (e) {
    // An unknown or malformed flag: the usage line, not a stack trace.
    console.error(`${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const values = parse();
const duration = values.duration !== undefined ? Number(values.duration) : Number.POSITIVE_INFINITY;
const rate = Number(values.rate);
const size = Number(values.size);
const connectionName = values["connection-name"];
const metricsPort = Number(values["http-port"] ?? values["metrics-port"] ?? "9464");
if (
  !(duration > 0) ||
  !(rate > 0) ||
  !(size >= 0) ||
  !Number.isInteger(metricsPort) ||
  metricsPort < 0 ||
  metricsPort > 65535 ||
  connectionName === ""
) {
  console.error(USAGE);
  process.exit(2);
}

const url = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/";
const EXCHANGE = "warren.demo";
const QUEUE = "warren.demo.events";

let state = "connecting";
let published = 0;
let confirmed = 0;
let failed = 0;
let consumed = 0;
let lastPublished = 0;
let stopping = false;

function status(final = false): void {
  const perSec = published - lastPublished;
  lastPublished = published;
  const line =
    `[warren demo] state=${state} published/s=${final ? "-" : perSec} published=${published} ` +
    `confirmed=${confirmed} failed=${failed} consumed=${consumed}`;
  if (process.stdout.isTTY && !final) process.stdout.write(`\r${line}\x1b[K`);
  else console.log(line);
}

async function main(): Promise<void> {
  console.log(`[warren demo] connecting to ${redactUrl(url)}`);
  // Prometheus metrics (warren_*) on their own registry, served at /metrics by the status server.
  const registry = metricsPort > 0 ? new Registry() : undefined;
  // The supervised client: it reconnects, re-declares the topology and resumes the consumer
  // after any fault (try `rabbitmqctl close_connection` on it, or restart the broker).
  const client: Client = connect({
    url,
    connectionName,
    ...(registry ? { metrics: { registry } } : {}),
  });
  client.on("state", ({ to, error, host }) => {
    state = to;
    if (error) console.log(`\n[warren demo] ${to} (${host}): ${error.message}`);
  });
  // The client's own status page, probes (/healthz, /readyz) and /metrics, on one port.
  let statusServer: StatusServer | undefined;
  if (registry) {
    statusServer = await serveStatus(client, { port: metricsPort, registry });
    console.log(`[warren demo] status page at ${statusServer.url}/ (metrics at ${statusServer.url}/metrics)`);
  }
  await client.ready();

  // Topology: a durable topic exchange and a queue bound to it, recorded for recovery.
  await client.declare({
    exchanges: [{ name: EXCHANGE, type: "topic", durable: true }],
    queues: [{ name: QUEUE, durable: true }],
    bindings: [{ exchange: EXCHANGE, queue: QUEUE, routingKey: "demo.#" }],
  });

  // Consumer: acked when the handler returns, bounded prefetch.
  const consumer = client.consume({ queue: QUEUE, prefetch: 500 }, () => {
    consumed++;
  });
  consumer.on("error", (err) => console.error(`[warren demo] handler failed: ${String(err)}`));

  // Publisher: confirms on; a steady stream paced per 100 ms tick.
  const body = Buffer.alloc(size, 0x61);
  const perTick = Math.max(1, Math.round(rate / 10));
  const inFlight = new Set<Promise<void>>();
  const ticker = setInterval(() => {
    if (stopping || state !== "running") return;
    for (let i = 0; i < perTick && inFlight.size < 10_000; i++) {
      const n = ++published;
      const p = client
        .publish(EXCHANGE, `demo.event.${n % 10}`, body, {
          messageId: `demo-${n}`,
          deliveryMode: 2,
          timestamp: new Date(),
        })
        .then(
          () => void confirmed++,
          () => void failed++,
        )
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  }, 100);
  const statusTimer = setInterval(() => status(), 1000);

  const stopped = new Promise<void>((resolve) => {
    const stop = async (why: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(ticker);
      clearInterval(statusTimer);
      if (process.stdout.isTTY) process.stdout.write("\n");
      console.log(`[warren demo] stopping (${why}): waiting for ${inFlight.size} confirms`);
      await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 5000))]);
      // Let the consumer catch up (bounded), then close: consumers drain, channels close.
      const deadline = Date.now() + 5000;
      while (consumed < confirmed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await client.close();
      await statusServer?.close();
      status(true);
      resolve();
    };
    process.once("SIGINT", () => void stop("Ctrl-C"));
    process.once("SIGTERM", () => void stop("SIGTERM"));
    if (Number.isFinite(duration)) setTimeout(() => void stop(`--duration ${duration}s`), duration * 1000);
    client.on("state", ({ to, error }) => {
      if (to === "failed") {
        console.error(`[warren demo] gave up: ${error?.message}`);
        process.exitCode = 1;
        void stop("failed");
      }
    });
  });
  await stopped;
}

main().catch((err: unknown) => {
  const e = err as Error;
  console.error(
    `\n[warren demo] ${e instanceof WarrenError ? `${e.name} (${e.code})` : e.name}: ${e.message}`,
  );
  process.exit(1);
});
