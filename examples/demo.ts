/**
 * The demo service: declares its topology, publishes a steady stream with
 * publisher confirms, consumes it with manual acks, and prints a live status
 * line. Stops cleanly on Ctrl-C (SIGINT/SIGTERM) or after --duration seconds.
 *
 *   npm start                          run until Ctrl-C
 *   npm start -- --duration 10         run for 10 s
 *   npm start -- --rate 2000           target publishes per second (default 1000)
 *   AMQP_URL=amqp://u:p@host/vhost npm start
 */
import { parseArgs } from "node:util";
import { type Channel, type Connection, connect, redactUrl, WarrenError } from "../src/index.js";

const { values } = parseArgs({
  options: {
    duration: { type: "string" },
    rate: { type: "string", default: "1000" },
    size: { type: "string", default: "256" },
  },
});
const duration = values.duration !== undefined ? Number(values.duration) : Number.POSITIVE_INFINITY;
const rate = Number(values.rate);
const size = Number(values.size);
if (!(duration > 0) || !(rate > 0) || !(size >= 0)) {
  console.error("usage: npm start -- [--duration seconds] [--rate msgs/s] [--size bytes]");
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
  const conn: Connection = await connect({ url, connectionName: "warren-demo" });
  state = "open";
  conn.on("blocked", (reason) => (state = `blocked (${reason})`));
  conn.on("unblocked", () => (state = "open"));
  conn.on("close", (err) => {
    if (!stopping) {
      state = `closed: ${err?.message ?? "unexpectedly"}`;
      status(true);
      process.exitCode = 1;
    }
  });

  // Topology: a durable topic exchange and a queue bound to it.
  const setup = await conn.openChannel();
  await setup.exchangeDeclare({ exchange: EXCHANGE, type: "topic", durable: true });
  await setup.queueDeclare({ queue: QUEUE, durable: true, arguments: { "x-queue-type": "classic" } });
  await setup.queueBind({ queue: QUEUE, exchange: EXCHANGE, routingKey: "demo.#" });
  await setup.queuePurge({ queue: QUEUE });
  await setup.close();

  // Consumer: manual acks, bounded prefetch.
  const sub: Channel = await conn.openChannel();
  await sub.basicQos({ prefetchCount: 500 });
  await sub.basicConsume({ queue: QUEUE }, (msg) => {
    consumed++;
    sub.basicAck(msg.deliveryTag);
  });

  // Publisher: confirms on; a steady stream paced per 100 ms tick.
  const pub: Channel = await conn.openChannel();
  await pub.confirmSelect();
  const body = Buffer.alloc(size, 0x61);
  const perTick = Math.max(1, Math.round(rate / 10));
  const inFlight = new Set<Promise<void>>();
  const ticker = setInterval(() => {
    if (stopping || conn.isBlocked || !pub.isOpen) return;
    for (let i = 0; i < perTick && inFlight.size < 10_000; i++) {
      const n = ++published;
      const p = pub
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

  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(ticker);
    clearInterval(statusTimer);
    if (process.stdout.isTTY) process.stdout.write("\n");
    console.log(`[warren demo] stopping (${why}): waiting for ${inFlight.size} confirms`);
    await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 5000))]);
    // Let the consumer catch up (bounded), then close.
    const deadline = Date.now() + 5000;
    while (consumed < confirmed && Date.now() < deadline && sub.isOpen)
      await new Promise((r) => setTimeout(r, 50));
    state = "closing";
    await conn.close();
    state = "closed";
    status(true);
  };
  process.once("SIGINT", () => void stop("Ctrl-C"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
  if (Number.isFinite(duration)) setTimeout(() => void stop(`--duration ${duration}s`), duration * 1000);
  await conn.whenClosed();
}

main().catch((err: unknown) => {
  const e = err as Error;
  console.error(
    `\n[warren demo] ${e instanceof WarrenError ? `${e.name} (${e.code})` : e.name}: ${e.message}`,
  );
  process.exit(1);
});
