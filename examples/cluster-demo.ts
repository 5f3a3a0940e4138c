/**
 * The fail-over showcase: a local three-node RabbitMQ cluster (chaos/cluster), the demo service
 * publishing with confirms to a quorum queue and consuming it across the cluster, and every
 * `--kill-every` seconds the node holding the queue's leader SIGKILLed and brought back. The status
 * line shows published / confirmed / consumed / rejected / lost live: rejected and lost stay at 0.
 * The cluster is stopped on exit (Ctrl-C, SIGTERM or --duration).
 *
 *   npm run demo -- --cluster                       until Ctrl-C
 *   npm run demo -- --cluster --duration 90 --rate 500 --kill-every 20
 *   npm run demo -- --cluster --http-port 9100      the status page there (default 9464; 0: off)
 *
 * Needs root and Debian's rabbitmq-server (the nodes run as private processes on their own ports).
 */
import { parseArgs } from "node:util";
import { type Cluster, startCluster } from "../chaos/cluster/cluster.js";
import { type Client, connect, type StatusServer, serveStatus, WarrenError } from "../src/index.js";
import { extraNodesSupported } from "../test/support/extra-node.js";

const USAGE =
  "usage: npm run demo -- --cluster [--duration s] [--rate msgs/s] [--kill-every s] [--down-for s < kill-every] [--http-port port (0: off)]";

function parse() {
  try {
    return parseArgs({
      options: {
        cluster: { type: "boolean" },
        duration: { type: "string" },
        rate: { type: "string", default: "500" },
        "kill-every": { type: "string", default: "20" },
        /** How long the killed node stays down before it is started again, in seconds. */
        "down-for": { type: "string", default: "5" },
        "http-port": { type: "string", default: "9464" },
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
const killEvery = Number(values["kill-every"]);
const downFor = Number(values["down-for"]);
const httpPort = Number(values["http-port"]);
if (
  !(duration > 0) ||
  !(rate > 0) ||
  !(killEvery > 0) ||
  !(downFor >= 0) ||
  downFor >= killEvery ||
  !Number.isInteger(httpPort) ||
  httpPort < 0 ||
  httpPort > 65535
) {
  console.error(USAGE);
  process.exit(2);
}

const QUEUE = "warren.demo.cluster";
/** A confirmed message not consumed this long after its confirm counts as lost (live figure). */
const LOST_AFTER_MS = 15_000;

const log = (line: string) => console.log(`${process.stdout.isTTY ? "\n" : ""}[warren cluster demo] ${line}`);

async function main(): Promise<void> {
  if (!extraNodesSupported()) {
    console.error(
      "[warren cluster demo] needs root and Debian's rabbitmq-server (apt-get install rabbitmq-server) to run three private nodes",
    );
    process.exit(2);
  }
  console.log("[warren cluster demo] starting three RabbitMQ nodes…");
  const cluster: Cluster = await startCluster({ nodes: 3, name: "warren-demo-cluster" });
  console.log(
    `[warren cluster demo] cluster up in ${cluster.startMs} ms: ports ${cluster.amqpPorts.join(", ")}`,
  );

  let client: Client | undefined;
  let statusServer: StatusServer | undefined;
  let stopping = false;
  const cleanup = async () => {
    await statusServer?.close().catch(() => undefined);
    await client?.close().catch(() => undefined);
    await cluster.stop();
  };
  try {
    client = connect({ urls: cluster.urls, connectionName: "warren-cluster-demo", heartbeat: 5 });
    const cl = client;
    if (httpPort > 0) {
      // The fail-over, live: the page shows each recovery and the host the client moved to.
      statusServer = await serveStatus(cl, { port: httpPort });
      log(`status page at ${statusServer.url}/`);
    }
    let state = "connecting";
    cl.on("state", ({ to, error }) => {
      state = to;
      if (error && (to === "recovering" || to === "failed")) log(`${to}: ${error.message}`);
    });
    await cl.ready();
    await cl.declare({ queues: [{ name: QUEUE, durable: true, arguments: { "x-queue-type": "quorum" } }] });

    const confirmedAt = new Map<string, number>();
    const consumed = new Set<string>();
    let published = 0;
    let confirmed = 0;
    let rejected = 0;
    let duplicates = 0;
    const consumer = cl.consume({ queue: QUEUE, prefetch: 200 }, (msg) => {
      const id = msg.properties.messageId ?? "";
      if (consumed.has(id)) duplicates += 1;
      else consumed.add(id);
      confirmedAt.delete(id);
    });
    const pub = cl.publisher({ maxInFlight: 500 });
    const nodeOf = () => {
      const address = cl.connection?.address ?? "";
      const i = cluster.amqpPorts.findIndex((p) => address.includes(`:${p}`));
      return i < 0 ? "-" : String(i + 1);
    };
    let leader = "?";
    let lastKill = "";

    // Publishing: a steady stream paced per 100 ms tick.
    const perTick = Math.max(1, Math.round(rate / 10));
    const ticker = setInterval(() => {
      if (stopping) return;
      for (let k = 0; k < perTick && pub.pending < 5000; k++) {
        const id = `c-${++published}`;
        pub
          .publish({
            exchange: "",
            routingKey: QUEUE,
            body: id,
            properties: { messageId: id, persistent: true },
          })
          .then(
            () => {
              confirmed += 1;
              if (!consumed.has(id)) confirmedAt.set(id, Date.now());
            },
            (err: Error) => {
              rejected += 1;
              log(`rejected ${id}: ${err.name}: ${err.message}`);
            },
          );
      }
    }, 100);

    const lostNow = () => {
      const limit = Date.now() - LOST_AFTER_MS;
      let n = 0;
      for (const t of confirmedAt.values()) if (t < limit) n += 1;
      return n;
    };
    const status = () => {
      const c = pub.counters;
      const line =
        `[warren cluster demo] state=${state} node=${nodeOf()} leader=${leader} published=${published} ` +
        `confirmed=${confirmed} consumed=${consumed.size} rejected=${rejected} lost=${lostNow()} ` +
        `dups=${duplicates} nack-retries=${c.nackRetries} renewals=${c.channelRenewals}${lastKill}`;
      if (process.stdout.isTTY) process.stdout.write(`\r${line}\x1b[K`);
      else console.log(line);
    };
    const statusTimer = setInterval(status, 1000);
    const leaderTimer = setInterval(() => {
      cluster.leaderOf(QUEUE).then(
        (i) => {
          leader = String(i + 1);
        },
        () => {
          leader = "?";
        },
      );
    }, 2000);

    // The chaos: every killEvery seconds the leader's node dies, and comes back downFor seconds later.
    let chaos = Promise.resolve();
    const killTimer = setInterval(() => {
      chaos = chaos.then(async () => {
        if (stopping) return;
        const victim = await cluster.leaderOf(QUEUE).catch(() => -1);
        if (victim < 0 || stopping) return;
        const at = Date.now();
        await cluster.kill(victim);
        log(`killed node ${victim + 1} (the queue's leader)`);
        lastKill = ` last-kill=node${victim + 1}`;
        await new Promise((r) => setTimeout(r, downFor * 1000));
        if (stopping) return;
        await cluster.restart(victim);
        log(
          `node ${victim + 1} back in the cluster (${Math.round((Date.now() - at) / 1000)} s after the kill)`,
        );
      });
    }, killEvery * 1000);

    await new Promise<void>((resolve) => {
      const stop = (why: string) => {
        if (stopping) return;
        stopping = true;
        log(`stopping (${why})`);
        resolve();
      };
      process.once("SIGINT", () => stop("Ctrl-C"));
      process.once("SIGTERM", () => stop("SIGTERM"));
      if (Number.isFinite(duration)) setTimeout(() => stop(`--duration ${duration}s`), duration * 1000);
      cl.on("state", ({ to }) => {
        if (to === "failed") stop("the client failed");
      });
    });
    clearInterval(ticker);
    clearInterval(killTimer);
    clearInterval(leaderTimer);
    await chaos.catch(() => undefined);
    await pub.whenIdle(15_000);
    // Let the consumer catch up (bounded), then report.
    const deadline = Date.now() + 15_000;
    while (confirmedAt.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    clearInterval(statusTimer);
    status();
    if (process.stdout.isTTY) process.stdout.write("\n");
    const lost = confirmedAt.size;
    console.log(
      `[warren cluster demo] done: published ${published}, confirmed ${confirmed}, consumed ${consumed.size}, ` +
        `rejected ${rejected}, lost ${lost}, duplicates ${duplicates}`,
    );
    await consumer.cancel().catch(() => undefined);
    if (lost > 0 || rejected > 0 || cl.state === "failed") process.exitCode = 1;
  } finally {
    stopping = true;
    console.log("[warren cluster demo] stopping the cluster…");
    await cleanup();
  }
}

main().catch((err: unknown) => {
  const e = err as Error;
  console.error(
    `\n[warren cluster demo] ${e instanceof WarrenError ? `${e.name} (${e.code})` : e.name}: ${e.message}`,
  );
  process.exit(1);
});
