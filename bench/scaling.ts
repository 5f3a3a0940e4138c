/**
 * How the client's cost grows with the work: throughput and client CPU per message as the
 * number of consumers (1 → 64, each on its own channel and queue), of confirmed publishers
 * (1 → 16, each on its own channel) and the message size (16 B → 4 MiB) grow, warren's
 * supervised client and the best of the peers side by side.
 *
 *   npx tsx bench/scaling.ts [--reps N] [--quick] [--clients a,b] [--dimensions consumers,publishers,size]
 *                            [--write | --no-write]
 *
 * Every point is one fresh worker process per client and repetition (bench/worker.ts), warmed
 * up on the same code path, its timed phase measured as in bench/run.ts. Results go to
 * bench/scaling.json and the "Scaling" section of bench/RESULTS.md on a full, unfiltered run.
 */
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { CLIENT_NAMES, type ClientName, PEERS } from "./clients/types.js";
import { CLIENT_FRAME_MAX, MiB } from "./config.js";
import {
  type Admin,
  gitCommit,
  HERE,
  openAdmin,
  redact,
  replaceSection,
  runWorker,
  sample,
  URL_,
} from "./harness.js";
import type { Job, ScalePhase, ScaleWorkload } from "./jobs.js";
import { fmtCount, fmtNum, median, type Sample } from "./report.js";

/** One measured point of a dimension. */
interface Point {
  workload: ScaleWorkload;
  /** consumers, publishers: how many; size: 1. */
  parallel: number;
  bodySize: number;
  count: number;
  warmup: number;
  /** Confirm window of each publisher. */
  maxInFlight: number;
  /** Prefetch of each consumer. */
  prefetch: number;
  label: string;
}

const SMALL = 256;
/** Each consumer's prefetch and each publisher's confirm window, whatever their number. */
const PER_CHANNEL_WINDOW = 100;
const CONSUMERS = [1, 4, 16, 64];
const PUBLISHERS = [1, 4, 16];
const SIZES = [16, 1024, 64 * 1024, MiB, 4 * MiB];
const DIMENSIONS: readonly ScaleWorkload[] = ["consumers", "publishers", "size"];
/** The clients of the table: warren's supervised client and the peers. */
const DEFAULT_CLIENTS: readonly ClientName[] = ["warren-client", ...PEERS];

function sizeLabel(n: number): string {
  return n >= MiB ? `${n / MiB} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`;
}

function points(quick: boolean, dims: readonly ScaleWorkload[]): Point[] {
  const total = quick ? 1_280 : 32_000;
  const warmup = quick ? 64 : 1_000;
  const out: Point[] = [];
  if (dims.includes("consumers"))
    for (const n of CONSUMERS)
      out.push({
        workload: "consumers",
        parallel: n,
        bodySize: SMALL,
        count: total,
        warmup,
        maxInFlight: PER_CHANNEL_WINDOW,
        prefetch: PER_CHANNEL_WINDOW,
        label: `${n} consumer${n > 1 ? "s" : ""}`,
      });
  if (dims.includes("publishers"))
    for (const n of PUBLISHERS)
      out.push({
        workload: "publishers",
        parallel: n,
        bodySize: SMALL,
        count: total,
        warmup,
        maxInFlight: PER_CHANNEL_WINDOW,
        prefetch: PER_CHANNEL_WINDOW,
        label: `${n} publisher${n > 1 ? "s" : ""}`,
      });
  if (dims.includes("size"))
    for (const size of SIZES) {
      // Enough messages for a phase of a second or so, bounded in bytes (the queue holds them).
      const bytes = quick ? 16 * MiB : 256 * MiB;
      const count = Math.min(quick ? 2_000 : 20_000, Math.max(quick ? 8 : 64, Math.floor(bytes / size)));
      // At most 64 MiB in flight or prefetched, at most 1000 messages.
      const window = Math.min(1000, Math.max(8, Math.floor((64 * MiB) / size)));
      out.push({
        workload: "size",
        parallel: 1,
        bodySize: size,
        count,
        // At least two windows untimed: the heap has grown to what a window keeps in flight
        // before timing starts (bench/config.ts, warmupLarge).
        warmup: Math.max(Math.min(warmup, Math.max(4, Math.floor(count / 8))), 2 * window),
        maxInFlight: window,
        prefetch: window,
        label: sizeLabel(size),
      });
    }
  return out;
}

const PHASES: Record<ScaleWorkload, readonly ScalePhase[]> = {
  consumers: ["consumers"],
  publishers: ["publishers"],
  size: ["size-publish", "size-consume"],
};

interface Args {
  reps: number;
  quick: boolean;
  clients: ClientName[];
  dimensions: ScaleWorkload[];
  write: boolean | undefined;
}

function usage(): never {
  console.error(
    "usage: tsx bench/scaling.ts [--reps N] [--quick] [--clients warren-client,amqplib,...] " +
      "[--dimensions consumers,publishers,size] [--write|--no-write]",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    reps: 3,
    quick: false,
    clients: [...DEFAULT_CLIENTS],
    dimensions: [...DIMENSIONS],
    write: undefined,
  };
  let repsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split("=", 2) as [string, string | undefined];
    const value = (): string => inline ?? argv[++i] ?? usage();
    switch (flag) {
      case "--reps":
        a.reps = Number(value());
        repsGiven = true;
        if (!Number.isInteger(a.reps) || a.reps < 1) usage();
        break;
      case "--quick":
        a.quick = true;
        break;
      case "--clients":
        a.clients = value().split(",") as ClientName[];
        if (a.clients.some((c) => !CLIENT_NAMES.includes(c))) usage();
        break;
      case "--dimensions":
        a.dimensions = value().split(",") as ScaleWorkload[];
        if (a.dimensions.some((d) => !DIMENSIONS.includes(d))) usage();
        break;
      case "--write":
        a.write = true;
        break;
      case "--no-write":
        a.write = false;
        break;
      default:
        usage();
    }
  }
  if (a.quick && !repsGiven) a.reps = 1;
  return a;
}

/** The samples of one (point, phase, client). */
interface Cell {
  point: Point;
  phase: ScalePhase;
  client: ClientName;
  samples: Sample[];
  failures: string[];
}

async function runPoint(
  admin: Admin,
  p: Point,
  client: ClientName,
  at: { rep: number; position: number },
  cells: Cell[],
  quick: boolean,
): Promise<void> {
  const phaseTimeoutMs = quick ? 60_000 : 120_000;
  const queues: string[] = [];
  const declare = async (): Promise<string> => {
    const q = await admin.declare();
    queues.push(q);
    return q;
  };
  const cell = (ph: ScalePhase) => cells.find((c) => c.point === p && c.phase === ph && c.client === client)!;
  try {
    const warmupQueue = await declare();
    const timed: string[] = [];
    let expected = 0;
    if (p.workload === "consumers") {
      const each = Math.floor(p.count / p.parallel);
      await admin.fill(warmupQueue, p.warmup, p.bodySize);
      for (let i = 0; i < p.parallel; i++) {
        const q = await declare();
        await admin.fill(q, each, p.bodySize);
        timed.push(q);
      }
    } else {
      timed.push(await declare());
      // publishers: the messages stay; size: published, then consumed.
      expected = p.workload === "publishers" ? p.count : 0;
    }
    const job: Job = {
      client,
      workload: p.workload,
      url: URL_,
      frameMax: CLIENT_FRAME_MAX[client],
      queue: timed[0]!,
      warmupQueue,
      count: p.count,
      warmupCount: p.warmup,
      bodySize: p.bodySize,
      maxInFlight: p.maxInFlight,
      prefetch: p.prefetch,
      profileDir: undefined,
      phaseTimeoutMs,
      rpcConcurrentCount: 0,
      rpcConcurrency: 1,
      parallel: p.parallel,
      queues: timed,
    };
    const reply = await runWorker(job, phaseTimeoutMs * 2 + 30_000);
    if (!reply.ok) {
      const msg = reply.error.split("\n")[0]!;
      for (const ph of PHASES[p.workload]) cell(ph).failures.push(`rep ${at.rep + 1}: ${msg}`);
      console.error(`  ${client} ${p.label} rep ${at.rep + 1}: FAILED ${reply.error}\n${reply.stderr}`);
      return;
    }
    let note: string | undefined;
    for (const q of timed) {
      const want = p.workload === "publishers" ? expected : 0;
      const n = await admin.waitForCount(q, want, 30_000);
      if (n !== want) note = `queue ${q} holds ${n} messages, expected ${want}`;
    }
    for (const r of reply.phases) {
      const s = sample(r, at, reply.maxRssKiB, note === undefined, note);
      const c = cell(r.phase as ScalePhase);
      c.samples.push(s);
      if (note !== undefined) c.failures.push(`rep ${at.rep + 1}: ${note}`);
      console.error(
        `  rep ${at.rep + 1} ${`${r.phase} ${p.label}`.padEnd(26)} ${client.padEnd(22)} ` +
          `${fmtNum(s.msgsPerSec).padStart(9)} msgs/s ${fmtNum(s.mbPerSec, 1).padStart(7)} MB/s ` +
          `${fmtNum(s.cpuUsPerMsg, 2).padStart(9)} µs/msg${note === undefined ? "" : `  NOT VERIFIED: ${note}`}`,
      );
    }
  } finally {
    for (const q of queues) await admin.delete(q);
  }
}

/** "median (min–max)" of the verified samples' values, or n/a. */
function spread(xs: number[], digits: number): string {
  const m = median(xs);
  if (m === null) return "n/a";
  if (xs.length < 2) return fmtNum(m, digits);
  return `${fmtNum(m, digits)} (${fmtNum(Math.min(...xs), digits)}–${fmtNum(Math.max(...xs), digits)})`;
}

/** The ratio of the medians, oriented so that above 1× means the subject is ahead. */
function ratio(subject: number[], peer: number[], higherIsBetter: boolean): string {
  const a = median(subject);
  const b = median(peer);
  if (a === null || b === null || a === 0 || b === 0) return "n/a";
  const r = higherIsBetter ? a / b : b / a;
  return `${r.toFixed(2)}×`;
}

const PHASE_TEXT: Record<ScalePhase, string> = {
  consumers: "consume",
  publishers: "publish, confirmed",
  "size-publish": "publish, confirmed",
  "size-consume": "consume",
};

function table(cells: Cell[], pts: Point[], clients: ClientName[]): string {
  const subject: ClientName = clients.includes("warren-client") ? "warren-client" : clients[0]!;
  const peers = clients.filter((c) => PEERS.includes(c));
  const head = [
    "Work",
    "Phase",
    `${subject} msgs/s`,
    "best peer msgs/s",
    "ratio",
    `${subject} CPU µs/msg`,
    "most frugal peer CPU µs/msg",
    "ratio",
  ];
  const rows = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`];
  for (const p of pts)
    for (const ph of PHASES[p.workload]) {
      const values = (c: ClientName, f: (s: Sample) => number): number[] =>
        (cells.find((x) => x.point === p && x.phase === ph && x.client === c)?.samples ?? [])
          .filter((s) => s.verified)
          .map(f);
      const rate = (c: ClientName) => values(c, (s) => s.msgsPerSec);
      const cpu = (c: ClientName) => values(c, (s) => s.cpuUsPerMsg);
      const pick = (f: (c: ClientName) => number[], better: (a: number, b: number) => boolean) => {
        let best: ClientName | undefined;
        for (const c of peers) {
          const m = median(f(c));
          const b = best === undefined ? null : median(f(best));
          if (m !== null && (b === null || better(m, b))) best = c;
        }
        return best;
      };
      const fast = pick(rate, (a, b) => a > b);
      const frugal = pick(cpu, (a, b) => a < b);
      const digits = p.bodySize >= MiB ? 0 : 1;
      const size = p.workload === "size" ? "" : ` × ${p.bodySize} B`;
      rows.push(
        `| ${p.label}${size} (${fmtCount(p.count)} msgs) | ${PHASE_TEXT[ph]} | ${spread(rate(subject), 0)} | ` +
          `${fast ? `${spread(rate(fast), 0)} ${fast}` : "n/a"} | ${fast ? ratio(rate(subject), rate(fast), true) : "n/a"} | ` +
          `${spread(cpu(subject), digits)} | ${frugal ? `${spread(cpu(frugal), digits)} ${frugal}` : "n/a"} | ` +
          `${frugal ? ratio(cpu(subject), cpu(frugal), false) : "n/a"} |`,
      );
    }
  return rows.join("\n");
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const filtered =
    args.dimensions.length !== DIMENSIONS.length ||
    args.clients.length !== DEFAULT_CLIENTS.length ||
    args.clients.some((c) => !DEFAULT_CLIENTS.includes(c));
  const write = args.write ?? (!args.quick && !filtered);
  const pts = points(args.quick, args.dimensions);
  const cells: Cell[] = pts.flatMap((point) =>
    PHASES[point.workload].flatMap((phase) =>
      args.clients.map((client) => ({ point, phase, client, samples: [], failures: [] })),
    ),
  );
  const { admin, interrupted } = await openAdmin();
  const started = Date.now();
  const loadStart = loadavg().map((x) => Math.round(x * 100) / 100);
  console.error(
    `warren scaling bench: ${admin.brokerVersion} at ${redact(URL_)}, node ${process.version}, ${cpus().length} cores, ` +
      `${args.reps} repetition(s)${args.quick ? ", quick sizes" : ""}, load average ${loadStart.join(" ")}`,
  );
  try {
    for (let rep = 0; rep < args.reps && !interrupted(); rep++) {
      const order = args.clients.map((_, i) => args.clients[(i + rep) % args.clients.length]!);
      for (const p of pts)
        for (let position = 0; position < order.length && !interrupted(); position++)
          await runPoint(admin, p, order[position]!, { rep, position }, cells, args.quick);
    }
  } finally {
    await admin.close().catch((e: unknown) => console.error(`cleanup failed: ${String(e)}`));
  }
  if (interrupted()) return;
  const totalSec = Math.round((Date.now() - started) / 1000);
  const md = table(cells, pts, args.clients);
  console.log(`\n${md}\n`);
  const failed = cells.flatMap((c) => c.failures.map((f) => `${c.client} ${c.point.label} ${c.phase}: ${f}`));
  if (failed.length)
    console.log(`failures (left out of the medians):\n${failed.map((f) => `  - ${f}`).join("\n")}`);
  console.log(`total ${totalSec} s`);
  if (write) {
    const loadEnd = loadavg().map((x) => Math.round(x * 100) / 100);
    writeFileSync(
      join(HERE, "scaling.json"),
      `${JSON.stringify(
        {
          meta: {
            date: new Date().toISOString(),
            node: process.version,
            broker: admin.brokerVersion,
            cores: cpus().length,
            warrenCommit: gitCommit(),
            reps: args.reps,
            perChannelWindow: PER_CHANNEL_WINDOW,
            loadAverage: { start: loadStart, end: loadEnd },
            totalSeconds: totalSec,
          },
          cells: cells.map((c) => ({
            point: c.point,
            phase: c.phase,
            client: c.client,
            samples: c.samples,
            failures: c.failures,
          })),
        },
        null,
        2,
      )}\n`,
    );
    const section = [
      "## Scaling",
      "",
      `${new Date().toISOString().slice(0, 10)} · ${admin.brokerVersion} · ${cpus().length} cores · warren at ${gitCommit()}. ` +
        `Generated by \`npm run bench:scaling\` (bench/scaling.ts) in ${totalSec} s; median of ${args.reps} repetitions ` +
        `(min–max in brackets); load average ${loadStart.join(" ")} at the start, ${loadEnd.join(" ")} at the end.`,
      "",
      md,
      "",
      `- Consumers: N consumers started at once, each on its own new channel (prefetch ${PER_CHANNEL_WINDOW}) and its own ` +
        "pre-filled queue, the messages split evenly; acking each; timed from starting them until all were cancelled " +
        "(each cancel follows its last ack) — so opening and closing N channels is part of the work. warren-client: " +
        "`client.consume()` once per queue (its consume connection); the peers: a new channel per consumer on their one connection.",
      `- Publishers: N confirmed publishers at once, each on its own channel (made during the warm-up and kept), the ` +
        `messages split evenly, each with at most ${PER_CHANNEL_WINDOW} unconfirmed; timed until the last confirm. ` +
        "warren-client: `client.publisher({ maxInFlight })` × N (its publish connection).",
      "- Message size: published with confirms (at most 1000 in flight and at most 64 MiB), then consumed with the same " +
        "prefetch, as bench/run.ts's large workload; frame_max each client's default (warren and amqplib 131072, " +
        "rabbitmq-client and @cloudamqp/amqp-client 8192).",
      "- Best peer: the fastest of amqplib, rabbitmq-client and @cloudamqp/amqp-client at that point; most frugal: the " +
        "one with the least CPU per message there. Ratios are of the medians; above 1× means warren-client is ahead " +
        "(faster, or less CPU per message).",
      ...(failed.length
        ? ["", "Failures (left out of the medians):", "", ...failed.map((f) => `- ${f}`)]
        : []),
      "",
    ].join("\n");
    replaceSection(join(HERE, "RESULTS.md"), "## Scaling", section);
    console.log("wrote bench/scaling.json and the Scaling section of bench/RESULTS.md");
  }
  if (failed.length) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
