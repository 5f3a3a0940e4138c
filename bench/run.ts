/**
 * Throughput and client CPU cost of warren against amqplib, rabbitmq-client and
 * @cloudamqp/amqp-client, in one run against the same broker. warren is measured three
 * ways: "warren" (the low-level Connection/Channel API), "warren-client" (the supervised
 * client: its publishers and consumers) and "warren-outbox" (the supervised client
 * publishing through its durable SQLite outbox; confirm workload only).
 *
 *   npx tsx bench/run.ts [--reps N] [--quick] [--clients a,b] [--workloads w,x]
 *                        [--frame-max N|default] [--cpu-prof] [--write | --no-write]
 *
 * Workloads (sizes of the full run; --quick shrinks them to a smoke test):
 *   publish  100 000 × 256 B, no confirms, honouring each client's backpressure;
 *            the count is then checked with queue.declare(passive)
 *   confirm   30 000 × 256 B with confirms, at most 1000 unconfirmed
 *   consume   50 000 × 256 B pre-filled (untimed), consumed with prefetch 1000, each acked
 *   large       300 × 1 MiB with confirms (≤ 50 unconfirmed), then consumed (prefetch 50)
 *   rpc        5 000 sequential request/reply calls over direct reply-to (256 B each way), then
 *              10 000 with 50 outstanding; round-trip p50/p99 and calls/s. The server is the
 *              same for every client (bench/rpc-server.ts, in this process)
 *   pubsub   200 000 × 128 B published without confirms (≤ 1000 publish promises outstanding, or
 *            the client's drain signal) while a consumer of the same client (prefetch 1000)
 *            receives them: once with noAck, once acking each; publish → deliver p50/p99
 *
 * A client that does not run a workload (CLIENT_WORKLOADS in clients/types.ts) is shown
 * as n/a. "Best peer" is the best of the three other libraries.
 *
 * Each (client, workload, repetition) runs in a fresh forked process (bench/worker.ts)
 * that warms up on the same code path before its timed phase; the order of clients
 * rotates from one repetition to the next, and the median of the repetitions is
 * reported. CPU time is process.cpuUsage() of the worker over the timed phase only.
 *
 * --cpu-prof writes a V8 CPU profile of each timed phase to bench/profiles/ (summarise
 * with bench/profile-summary.ts); profiled numbers are not written as results.
 * Results go to bench/results.json and bench/RESULTS.md on a full, unfiltered run
 * (force with --write, suppress with --no-write).
 *
 * AMQP_URL selects the broker (default amqp://guest:guest@127.0.0.1:5672). Every queue
 * created is deleted again, also on failure or Ctrl-C.
 */
import { writeFileSync } from "node:fs";
import { cpus, loadavg, platform, release, totalmem } from "node:os";
import { join } from "node:path";
import { WRITE_WINDOW } from "./clients/pump.js";
import { CLIENT_NAMES, type ClientName, runsWorkload } from "./clients/types.js";
import {
  CLIENT_FRAME_MAX,
  CONFIRM_WINDOW,
  FULL,
  LARGE_BODY,
  LARGE_CONFIRM_WINDOW,
  LARGE_PREFETCH,
  PREFETCH,
  PUBSUB_BODY,
  PUBSUB_WINDOW,
  QUICK,
  RPC_CONCURRENCY,
  type Sizes,
  SMALL_BODY,
} from "./config.js";
import {
  type Admin,
  gitCommit,
  HERE,
  openAdmin,
  redact,
  runWorker,
  sample,
  sectionOf,
  URL_,
  versionOf,
} from "./harness.js";
import { type Job, PHASES_OF, type Phase, type ScalePhase, WORKLOADS, type Workload } from "./jobs.js";
import {
  fmtCount,
  fmtNum,
  headlineLines,
  headlineRatios,
  median,
  ratios,
  type Summary,
  spreadTable,
  table,
} from "./report.js";
import { startRpcServer } from "./rpc-server.js";

interface Args {
  reps: number;
  quick: boolean;
  clients: ClientName[];
  workloads: Workload[];
  cpuProf: boolean;
  write: boolean | undefined;
  /** undefined: each client's default. */
  frameMax: number | undefined;
}

function usage(): never {
  console.error(
    "usage: tsx bench/run.ts [--reps N] [--quick] [--clients warren,warren-client,warren-outbox,warren-observed,warren-status,warren-single,amqplib,...] [--workloads publish,confirm,consume,large,rpc,pubsub] [--frame-max N|default] [--cpu-prof] [--write|--no-write]",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    reps: 3,
    quick: false,
    clients: [...CLIENT_NAMES],
    workloads: [...WORKLOADS],
    cpuProf: false,
    write: undefined,
    frameMax: undefined,
  };
  let repsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage();
      return v;
    };
    switch (flag) {
      case "--reps": {
        a.reps = Number(value());
        repsGiven = true;
        if (!Number.isInteger(a.reps) || a.reps < 1) usage();
        break;
      }
      case "--quick":
        a.quick = true;
        break;
      case "--clients": {
        const names = value().split(",");
        for (const n of names) if (!CLIENT_NAMES.includes(n as ClientName)) usage();
        a.clients = CLIENT_NAMES.filter((n) => names.includes(n));
        break;
      }
      case "--workloads": {
        const names = value().split(",");
        for (const n of names) if (!WORKLOADS.includes(n as Workload)) usage();
        a.workloads = WORKLOADS.filter((n) => names.includes(n));
        break;
      }
      case "--frame-max": {
        const v = value();
        a.frameMax = v === "default" ? undefined : Number(v);
        if (a.frameMax !== undefined && (!Number.isInteger(a.frameMax) || a.frameMax < 8192)) usage();
        break;
      }
      case "--cpu-prof":
        a.cpuProf = true;
        break;
      case "--write":
        a.write = true;
        break;
      case "--no-write":
        a.write = false;
        break;
      case "-h":
      case "--help":
        usage();
        break;
      default:
        usage();
    }
  }
  if (a.quick && !repsGiven) a.reps = 1;
  return a;
}

// ─── main ───────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const sizes = args.quick ? QUICK : FULL;
  const filtered = args.clients.length !== CLIENT_NAMES.length || args.workloads.length !== WORKLOADS.length;
  const write = args.write ?? (!args.quick && !filtered && !args.cpuProf);
  const profileDir = args.cpuProf ? join(HERE, "profiles") : undefined;
  const phaseTimeoutMs = args.quick ? 60_000 : 120_000;

  const { admin, interrupted } = await openAdmin();

  const started = Date.now();
  const loadStart = loadavg().map((x) => Math.round(x * 100) / 100);
  const summaries: Summary[] = [];
  const phases = args.workloads.flatMap((w) => PHASES_OF[w]);
  for (const ph of phases)
    for (const c of args.clients)
      summaries.push({
        phase: ph,
        client: c,
        applicable: runsWorkload(c, WORKLOADS.find((w) => PHASES_OF[w].includes(ph))!),
        samples: [],
        failures: [],
        msgsPerSec: null,
        mbPerSec: null,
        cpuUsPerMsg: null,
        p50Us: null,
        p99Us: null,
      });

  console.error(
    `warren bench: ${admin.brokerVersion} at ${redact(URL_)}, node ${process.version}, ${cpus().length} cores, ` +
      `${args.reps} repetition(s)${args.quick ? ", quick sizes" : ""}, load average ${loadStart.join(" ")}`,
  );

  try {
    // The broker's first queue of the run is slower than the rest: warm it up once.
    {
      const q = await admin.declare();
      await admin.fill(q, sizes.warmupSmall * 2, SMALL_BODY);
      await admin.delete(q);
    }
    for (let rep = 0; rep < args.reps && !interrupted(); rep++) {
      const order = args.clients.map((_, i) => args.clients[(i + rep) % args.clients.length]!);
      for (const workload of args.workloads) {
        for (let position = 0; position < order.length && !interrupted(); position++) {
          const client = order[position]!;
          if (!runsWorkload(client, workload)) continue;
          await runOne(
            admin,
            { client, workload, rep, position, sizes, profileDir, phaseTimeoutMs, frameMax: args.frameMax },
            summaries,
          );
        }
      }
    }
  } finally {
    await admin.close().catch((e: unknown) => console.error(`cleanup failed: ${String(e)}`));
  }
  if (interrupted()) return;

  for (const s of summaries) {
    const ok = s.samples.filter((x) => x.verified);
    s.msgsPerSec = median(ok.map((x) => x.msgsPerSec));
    s.mbPerSec = median(ok.map((x) => x.mbPerSec));
    s.cpuUsPerMsg = median(ok.map((x) => x.cpuUsPerMsg));
    s.p50Us = median(ok.flatMap((x) => (x.p50Us === undefined ? [] : [x.p50Us])));
    s.p99Us = median(ok.flatMap((x) => (x.p99Us === undefined ? [] : [x.p99Us])));
  }

  const totalSec = (Date.now() - started) / 1000;
  const md = table(summaries, phases, args.clients, sizes);
  const headline = headlineRatios(summaries, args.clients);
  const headlines = headlineLines(headline);
  const spread = args.reps > 1 ? spreadTable(summaries, phases, args.clients, sizes) : undefined;
  console.log(`\n${md}\n`);
  if (headlines.length) console.log(`${headlines.join("\n")}\n`);
  if (spread) console.log(`Range over the ${args.reps} repetitions:\n\n${spread}\n`);
  console.log(
    "msgs/s: median over repetitions; CPU µs/msg: the client process's user+system CPU time over the timed phase ÷ messages.",
  );
  console.log(
    "X vs best peer: throughput X ÷ best peer, CPU best peer ÷ X (above 1 = X ahead); peers: amqplib, rabbitmq-client, @cloudamqp/amqp-client.",
  );
  const failed = summaries.flatMap((s) => s.failures.map((f) => `${s.client} ${s.phase}: ${f}`));
  if (failed.length)
    console.log(`\n* failures (excluded from medians):\n${failed.map((f) => `  - ${f}`).join("\n")}`);
  console.log(`\ntotal ${totalSec.toFixed(0)} s`);

  if (write) {
    const meta = {
      date: new Date().toISOString(),
      node: process.version,
      broker: admin.brokerVersion,
      cores: cpus().length,
      cpu: cpus()[0]?.model ?? "unknown",
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      os: `${platform()} ${release()}`,
      clients: Object.fromEntries(args.clients.map((c) => [c, versionOf(c)])),
      warrenCommit: gitCommit(),
      reps: args.reps,
      sizes,
      settings: {
        smallBody: SMALL_BODY,
        largeBody: LARGE_BODY,
        confirmWindow: CONFIRM_WINDOW,
        largeConfirmWindow: LARGE_CONFIRM_WINDOW,
        prefetch: PREFETCH,
        largePrefetch: LARGE_PREFETCH,
        pubsubBody: PUBSUB_BODY,
        pubsubWindow: PUBSUB_WINDOW,
        frameMax: args.frameMax ?? Object.fromEntries(args.clients.map((c) => [c, CLIENT_FRAME_MAX[c]])),
        writeWindow: WRITE_WINDOW,
      },
      loadAverage: { start: loadStart, end: loadavg().map((x) => Math.round(x * 100) / 100) },
      totalSeconds: Math.round(totalSec),
    };
    const results = summaries.map((s) => ({
      phase: s.phase,
      client: s.client,
      ...(s.applicable ? {} : { notApplicable: true }),
      median: {
        msgsPerSec: s.msgsPerSec,
        mbPerSec: s.mbPerSec,
        cpuUsPerMsg: s.cpuUsPerMsg,
        ...(s.p50Us !== null ? { p50Us: s.p50Us, p99Us: s.p99Us } : {}),
      },
      samples: s.samples,
      failures: s.failures,
    }));
    const ratioList = phases.map((ph) => {
      const rows = args.clients.map((c) => summaries.find((s) => s.phase === ph && s.client === c)!);
      return {
        phase: ph,
        ...ratios(rows),
        ...(args.clients.includes("warren-client") ? { warrenClient: ratios(rows, "warren-client") } : {}),
      };
    });
    writeFileSync(
      join(HERE, "results.json"),
      `${JSON.stringify({ meta, results, ratios: ratioList, confirm: headline }, null, 2)}\n`,
    );
    const versions = args.clients
      .filter((c) => c === "warren" || !c.startsWith("warren"))
      .map((c) => `${c} ${versionOf(c)}`)
      .join(", ");
    const doc = [
      "# Benchmark results",
      "",
      `${meta.date.slice(0, 10)} · Node.js ${meta.node} · ${meta.broker} on the same host · ` +
        `${meta.cores} cores (${meta.cpu}), ${meta.memoryGiB} GiB · ${meta.os}`,
      "",
      `Clients: ${versions} (warren at ${meta.warrenCommit}). Median of ${args.reps} repetitions, each client in its own process per workload; ` +
        `generated by \`npm run bench\` (bench/run.ts) in ${meta.totalSeconds} s; load average ` +
        `${meta.loadAverage.start.join(" ")} at the start, ${meta.loadAverage.end.join(" ")} at the end.`,
      "",
      md,
      "",
      ...headlines,
      "",
      "- msgs/s: messages ÷ wall time of the timed phase. Publishing without confirms ends once the broker has " +
        "answered a queue.declare sent after the last message on the same channel; the queue's message count is " +
        "then checked. Confirmed publishing ends at the last confirm; consuming at a round trip after the last ack.",
      "- CPU µs/msg: user + system CPU time of the client's process (`process.cpuUsage()`) over the timed phase ÷ " +
        "messages. The broker runs on the same cores, so throughput is partly the broker's; CPU/msg is the client's alone.",
      "- Clients: **warren** is the low-level API (`Connection.open()`, channels); warren-client the supervised client " +
        "(`connect()`): `client.publisher({ confirm: false })` without confirms, `client.publisher({ maxInFlight })` with " +
        "them (driven with the same caller-side window of maxInFlight as the peers), " +
        "`client.consume()` with an async handler; warren-outbox the same client publishing through " +
        '`client.publisher({ maxInFlight, outbox: { path, synchronous: "FULL" } })` into a fresh SQLite file, timed until ' +
        "every message is stored, relayed and confirmed (`pub.stored === 0`); warren-observed the supervised client with " +
        "Prometheus metrics (a private registry, scraped at the end of each phase) and OpenTelemetry tracing (an SDK tracer " +
        "provider, W3C context in every message, spans batched to an exporter that drops them); n/a: not run (the outbox " +
        "has only the confirm workload, warren-observed and warren-status confirm and consume); warren-status the supervised " +
        "client with its status server served and watched (an /events reader, /status.json every 2 s).",
      "- X vs best peer: throughput X ÷ the fastest of amqplib, rabbitmq-client and @cloudamqp/amqp-client, CPU the most " +
        "frugal of them ÷ X; above 1× means X is ahead.",
      `- RPC: request/reply over direct reply-to, 256 B each way, ${fmtCount(sizes.rpc)} calls one after the other, then ` +
        `${fmtCount(sizes.rpcConcurrent)} with ${RPC_CONCURRENCY} outstanding; msgs/s is calls/s, p50/p99 the round trip ` +
        "of each call (median over repetitions), ratio the lowest peer's ÷ X. warren and warren-client: the low-level " +
        "channel by hand and `client.rpcClient().call()`; amqplib and @cloudamqp/amqp-client by hand (consume " +
        "amq.rabbitmq.reply-to with noAck, publish with replyTo on the same channel); rabbitmq-client its " +
        "`createRPCClient()`. The server is the same for all: warren's low-level API in the orchestrator's process, " +
        "prefetch 100, echoing each body.",
      `- Publish while consuming (pubsub): ${fmtCount(sizes.pubsub)} × ${PUBSUB_BODY} B published without confirms while ` +
        `a consumer of the same client (prefetch ${PREFETCH}) receives them, on another channel of the same connection ` +
        "(warren-client: wherever `connect()`'s defaults put its publisher and consumer); once with noAck, once acking " +
        "each; timed until every message arrived and the consumer was cancelled (after the last ack). Publishing: " +
        `amqplib \`sendToQueue()\` and warren \`basicPublish()\` with their drain signal, rabbitmq-client and ` +
        `@cloudamqp/amqp-client \`basicPublish()\` and warren-client \`client.publisher({ confirm: false, maxInFlight: ` +
        `${PUBSUB_WINDOW} })\` with at most ${PUBSUB_WINDOW} promises outstanding. p50/p99: each message's ` +
        "publish → deliver latency (the time it was handed to the client, carried in its body), median over repetitions.",
      `- frame_max: ${
        args.frameMax === undefined
          ? "each client's default (warren and amqplib 131072, rabbitmq-client and @cloudamqp/amqp-client 8192)"
          : `${args.frameMax} for every client`
      }. Clients whose only backpressure signal is a promise per ` +
        `publish (rabbitmq-client, @cloudamqp/amqp-client) keep at most ${WRITE_WINDOW} of them unresolved without confirms.`,
      "",
      ...(spread
        ? [`Range over the ${args.reps} repetitions (every sample is in results.json):`, "", spread, ""]
        : []),
      ...(failed.length
        ? ["Failures (left out of the medians):", "", ...failed.map((f) => `- ${f}`), ""]
        : []),
    ].join("\n");
    // The scaling section (bench/scaling.ts) is kept as it was.
    const scaling = sectionOf(join(HERE, "RESULTS.md"), "## Scaling");
    writeFileSync(join(HERE, "RESULTS.md"), scaling ? `${doc.trimEnd()}\n\n${scaling}` : doc);
    console.log("wrote bench/results.json and bench/RESULTS.md");
  }
  if (args.cpuProf)
    console.log(`CPU profiles in ${profileDir} (summarise: npx tsx bench/profile-summary.ts FILE)`);
  if (failed.length) process.exitCode = 1;
}

interface RunSpec {
  frameMax: number | undefined;
  client: ClientName;
  workload: Workload;
  rep: number;
  position: number;
  sizes: Sizes;
  profileDir: string | undefined;
  phaseTimeoutMs: number;
}

async function runOne(admin: Admin, r: RunSpec, summaries: Summary[]): Promise<void> {
  const large = r.workload === "large";
  const bodySize = large ? LARGE_BODY : r.workload === "pubsub" ? PUBSUB_BODY : SMALL_BODY;
  const count = r.sizes[r.workload];
  const warmupCount = large
    ? r.sizes.warmupLarge
    : r.workload === "rpc"
      ? r.sizes.warmupRpc
      : r.sizes.warmupSmall;
  const queue = await admin.declare();
  const warmupQueue = await admin.declare();
  const slot = (ph: Phase | ScalePhase) => summaries.find((s) => s.phase === ph && s.client === r.client)!;
  try {
    if (r.workload === "consume") {
      await admin.fill(warmupQueue, warmupCount, bodySize);
      await admin.fill(queue, count, bodySize);
    }
    const job: Job = {
      client: r.client,
      workload: r.workload,
      url: URL_,
      frameMax: r.frameMax,
      queue,
      warmupQueue,
      count,
      warmupCount,
      bodySize,
      maxInFlight: large ? LARGE_CONFIRM_WINDOW : r.workload === "pubsub" ? PUBSUB_WINDOW : CONFIRM_WINDOW,
      prefetch: large ? LARGE_PREFETCH : PREFETCH,
      profileDir: r.profileDir,
      phaseTimeoutMs: r.phaseTimeoutMs,
      rpcConcurrentCount: r.sizes.rpcConcurrent,
      rpcConcurrency: RPC_CONCURRENCY,
    };
    // rpc: the same echo server for every client, on this process's own connection.
    const server = r.workload === "rpc" ? await startRpcServer(URL_, [queue, warmupQueue]) : undefined;
    const reply = await runWorker(job, r.phaseTimeoutMs * 2 + 30_000).finally(() => server?.close());
    if (!reply.ok) {
      const msg = reply.error.split("\n")[0]!;
      for (const ph of PHASES_OF[r.workload]) slot(ph).failures.push(`rep ${r.rep + 1}: ${msg}`);
      console.error(`  ${r.client} ${r.workload} rep ${r.rep + 1}: FAILED ${reply.error}\n${reply.stderr}`);
      return;
    }
    // What the broker holds afterwards: everything for publishes, nothing after consuming (pubsub
    // included: its worker also checked that each message arrived exactly once).
    let verified = true;
    let note: string | undefined;
    if (r.workload === "publish" || r.workload === "confirm") {
      const n = await admin.waitForCount(queue, count, 30_000);
      if (n !== count) {
        verified = false;
        note = `queue holds ${n} messages, expected ${count}`;
      }
    } else {
      const n = await admin.waitForCount(queue, 0, 10_000);
      if (n !== 0) {
        verified = false;
        note = `queue still holds ${n} messages after consuming`;
      }
    }
    for (const p of reply.phases) {
      const s = sample(p, r, reply.maxRssKiB, verified, note);
      slot(p.phase).samples.push(s);
      if (!verified) slot(p.phase).failures.push(`rep ${r.rep + 1}: ${note}`);
      console.error(
        `  rep ${r.rep + 1} ${p.phase.padEnd(13)} ${r.client.padEnd(22)} ${fmtNum(s.msgsPerSec).padStart(9)} msgs/s ` +
          `${fmtNum(s.mbPerSec, 1).padStart(7)} MB/s ${fmtNum(s.cpuUsPerMsg, 2).padStart(8)} µs/msg ` +
          `(user ${fmtNum(s.cpuUserUsPerMsg, 2)}, sys ${fmtNum(s.cpuSystemUsPerMsg, 2)}) ` +
          `${fmtNum(s.minorPageFaultsPerMsg, 1)} faults/msg` +
          (s.p50Us !== undefined ? ` p50 ${fmtNum(s.p50Us)} µs p99 ${fmtNum(s.p99Us ?? null)} µs` : "") +
          (verified ? "" : `  NOT VERIFIED: ${note}`),
      );
    }
    for (const f of reply.profiles) console.error(`    profile: ${f}`);
  } finally {
    await admin.delete(queue);
    await admin.delete(warmupQueue);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
