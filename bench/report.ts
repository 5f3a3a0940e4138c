/**
 * The benchmark's results: per-repetition samples, medians and ranges, ratios to the best peer,
 * and the Markdown tables and headline lines of bench/RESULTS.md.
 */
import type { ClientName } from "./clients/types.js";
import { PEERS } from "./clients/types.js";
import {
  CONFIRM_WINDOW,
  LARGE_CONFIRM_WINDOW,
  LARGE_PREFETCH,
  PREFETCH,
  PUBSUB_BODY,
  RPC_CONCURRENCY,
  type Sizes,
} from "./config.js";
import type { Phase } from "./jobs.js";

export interface Sample {
  rep: number;
  position: number;
  msgsPerSec: number;
  mbPerSec: number;
  cpuUsPerMsg: number;
  /** The user and system parts of cpuUsPerMsg. */
  cpuUserUsPerMsg: number;
  cpuSystemUsPerMsg: number;
  minorPageFaultsPerMsg: number;
  elapsedMs: number;
  maxRssKiB: number;
  verified: boolean;
  note?: string;
  /** rpc: round-trip percentiles of this repetition, µs; pubsub: publish → deliver. */
  p50Us?: number;
  p99Us?: number;
}

export interface Summary {
  phase: Phase;
  client: ClientName;
  /** False when the client does not run this workload (n/a). */
  applicable: boolean;
  samples: Sample[];
  failures: string[];
  msgsPerSec: number | null;
  mbPerSec: number | null;
  cpuUsPerMsg: number | null;
  /** rpc, pubsub: medians of the repetitions' latency p50 and p99, µs. */
  p50Us: number | null;
  p99Us: number | null;
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const PHASE_LABEL: Record<Phase, (s: Sizes) => string> = {
  publish: (s) => `publish, no confirms (${fmtCount(s.publish)} × 256 B)`,
  confirm: (s) => `publish, confirms ≤ ${CONFIRM_WINDOW} in flight (${fmtCount(s.confirm)} × 256 B)`,
  consume: (s) => `consume, prefetch ${PREFETCH}, ack each (${fmtCount(s.consume)} × 256 B)`,
  "large-publish": (s) => `publish 1 MiB, confirms ≤ ${LARGE_CONFIRM_WINDOW} in flight (${s.large} msgs)`,
  "large-consume": (s) => `consume 1 MiB, prefetch ${LARGE_PREFETCH}, ack each (${s.large} msgs)`,
  "rpc-sequential": (s) => `RPC round trip, sequential (${fmtCount(s.rpc)} calls × 256 B)`,
  "rpc-concurrent": (s) =>
    `RPC round trip, ${RPC_CONCURRENCY} outstanding (${fmtCount(s.rpcConcurrent)} calls × 256 B)`,
  "pubsub-noack": (s) =>
    `publish (no confirms) while consuming, noAck, same client (${fmtCount(s.pubsub)} × ${PUBSUB_BODY} B)`,
  "pubsub-ack": (s) =>
    `publish (no confirms) while consuming, ack each, same client (${fmtCount(s.pubsub)} × ${PUBSUB_BODY} B)`,
};

/** Phases whose table shows latency percentiles: rpc round trips, pubsub publish → deliver. */
export function hasLatency(ph: Phase): boolean {
  return ph.startsWith("rpc") || ph.startsWith("pubsub");
}

export function fmtCount(n: number): string {
  return n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n);
}

export function fmtNum(x: number | null, digits = 0): string {
  if (x === null) return "—";
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export interface Ratios {
  throughput: number | null;
  cpu: number | null;
  bestThroughputPeer: ClientName | null;
  bestCpuPeer: ClientName | null;
}

/** `subject` ÷ the best of the other libraries (throughput), best ÷ subject (CPU). */
export function ratios(rows: Summary[], subject: ClientName = "warren"): Ratios {
  const w = rows.find((r) => r.client === subject);
  const peers = rows.filter((r) => PEERS.includes(r.client));
  let bt: Summary | undefined;
  let bc: Summary | undefined;
  for (const p of peers) {
    if (p.msgsPerSec !== null && (bt === undefined || p.msgsPerSec > bt.msgsPerSec!)) bt = p;
    if (p.cpuUsPerMsg !== null && (bc === undefined || p.cpuUsPerMsg < bc.cpuUsPerMsg!)) bc = p;
  }
  return {
    throughput: w?.msgsPerSec && bt ? w.msgsPerSec / bt.msgsPerSec! : null,
    cpu: w?.cpuUsPerMsg && bc ? bc.cpuUsPerMsg! / w.cpuUsPerMsg : null,
    bestThroughputPeer: bt?.client ?? null,
    bestCpuPeer: bc?.client ?? null,
  };
}

/** Latency (rpc, pubsub): the lowest peer's percentile ÷ the subject's (above 1 = the subject is faster). */
export function latencyRatio(
  rows: Summary[],
  subject: ClientName,
  pick: (s: Summary) => number | null,
): { ratio: number | null; peer: ClientName | null } {
  const w = rows.find((r) => r.client === subject);
  let best: Summary | undefined;
  for (const p of rows.filter((r) => PEERS.includes(r.client))) {
    const v = pick(p);
    if (v !== null && (best === undefined || v < pick(best)!)) best = p;
  }
  const mine = w ? pick(w) : null;
  return { ratio: mine && best ? pick(best)! / mine : null, peer: best?.client ?? null };
}

export function fmtRatio(x: number | null, vs: ClientName | null): string {
  return x === null ? "—" : `${x.toFixed(2)}×${vs ? ` (vs ${vs})` : ""}`;
}

/** The ratio columns: the low-level warren, and the supervised client when it was run, vs the best peer. */
export function ratioSubjects(clients: ClientName[]): ClientName[] {
  if (!clients.some((c) => PEERS.includes(c))) return [];
  return (["warren", "warren-client"] as const).filter((c) => clients.includes(c));
}

export function table(summaries: Summary[], phases: Phase[], clients: ClientName[], sizes: Sizes): string {
  const subjects = ratioSubjects(clients);
  const head = [
    "Workload",
    "Metric",
    ...clients.map((c) => (c === "warren" ? "**warren**" : c)),
    ...subjects.map((c) => `${c} vs best peer`),
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`];
  for (const ph of phases) {
    const rows = clients.map((c) => summaries.find((s) => s.phase === ph && s.client === c)!);
    const rs = subjects.map((c) => ratios(rows, c));
    const large = ph.startsWith("large");
    const cell = (s: Summary, v: number | null, d: number) =>
      !s.applicable
        ? "n/a"
        : s.failures.length && v === null
          ? "failed"
          : fmtNum(v, d) + (s.failures.length ? "*" : "");
    const row = (metric: string, cells: string[], extra: string[]) =>
      `| ${[metric, ...cells, ...extra].join(" | ")} |`;
    const tput = rows.map((s) => cell(s, s.msgsPerSec, large ? 1 : 0));
    lines.push(
      `| ${PHASE_LABEL[ph](sizes)} ${row(
        "msgs/s",
        tput,
        rs.map((r) => fmtRatio(r.throughput, r.bestThroughputPeer)),
      )}`,
    );
    if (large) {
      const mb = rows.map((s) => cell(s, s.mbPerSec, 1));
      lines.push(
        `| ${row(
          "MB/s",
          mb,
          subjects.map(() => ""),
        )}`,
      );
    }
    if (hasLatency(ph)) {
      for (const [metric, pick] of [
        ["p50 µs", (s: Summary) => s.p50Us],
        ["p99 µs", (s: Summary) => s.p99Us],
      ] as const) {
        const rl = subjects.map((c) => latencyRatio(rows, c, pick));
        lines.push(
          `| ${row(
            metric,
            rows.map((s) => cell(s, pick(s), 0)),
            rl.map((r) => fmtRatio(r.ratio, r.peer)),
          )}`,
        );
      }
    }
    const cpu = rows.map((s) => cell(s, s.cpuUsPerMsg, large ? 0 : 2));
    lines.push(
      `| ${row(
        "CPU µs/msg",
        cpu,
        rs.map((r) => fmtRatio(r.cpu, r.bestCpuPeer)),
      )}`,
    );
  }
  return lines.join("\n");
}

export interface HeadlineRatios {
  /** warren-client ÷ best peer on confirmed publishing (throughput; CPU best peer ÷ warren-client). */
  clientVsBestPeer: Ratios | null;
  /** warren-client ÷ low-level warren on confirmed publishing (throughput; CPU warren ÷ warren-client). */
  clientVsWarren: { throughput: number | null; cpu: number | null } | null;
  /** warren-outbox ÷ warren-client confirmed throughput (target ≥ 0.75), and CPU warren-client ÷ warren-outbox. */
  outboxVsClient: { throughput: number | null; cpu: number | null } | null;
  /** warren-observed ÷ warren-client (metrics and tracing on ÷ off), confirmed publishing and consuming. */
  observedVsClient: { confirm: number | null; consume: number | null } | null;
  /** warren-status ÷ warren-client (status server served and watched ÷ not), confirmed publishing and consuming. */
  statusVsClient: { confirm: number | null; consume: number | null } | null;
  /** warren-client ÷ warren-single (two connections ÷ one), confirmed publishing and consuming. */
  separateVsSingle: { confirm: number | null; consume: number | null } | null;
}

export function div(a: number | null | undefined, b: number | null | undefined): number | null {
  return a != null && b ? a / b : null;
}

export function headlineRatios(summaries: Summary[], clients: ClientName[]): HeadlineRatios {
  const at = (c: ClientName) => summaries.find((s) => s.phase === "confirm" && s.client === c);
  const w = at("warren");
  const wc = at("warren-client");
  const wo = at("warren-outbox");
  const rows = clients.map((c) => at(c)).filter((s): s is Summary => s !== undefined);
  return {
    clientVsBestPeer: wc && clients.some((c) => PEERS.includes(c)) ? ratios(rows, "warren-client") : null,
    clientVsWarren:
      wc && w
        ? { throughput: div(wc.msgsPerSec, w.msgsPerSec), cpu: div(w.cpuUsPerMsg, wc.cpuUsPerMsg) }
        : null,
    outboxVsClient:
      wo && wc
        ? { throughput: div(wo.msgsPerSec, wc.msgsPerSec), cpu: div(wc.cpuUsPerMsg, wo.cpuUsPerMsg) }
        : null,
    observedVsClient: versusClient(summaries, "warren-observed"),
    statusVsClient: versusClient(summaries, "warren-status"),
    separateVsSingle: invert(versusClient(summaries, "warren-single")),
  };
}

/** 1 ÷ each ratio (warren-client ÷ the variant). */
function invert(r: HeadlineRatios["observedVsClient"]): HeadlineRatios["observedVsClient"] {
  if (r === null) return null;
  return { confirm: r.confirm ? 1 / r.confirm : null, consume: r.consume ? 1 / r.consume : null };
}

/** `variant` ÷ warren-client throughput, on confirmed publishing and on consuming. */
export function versusClient(summaries: Summary[], variant: ClientName): HeadlineRatios["observedVsClient"] {
  const at = (ph: Phase, c: ClientName) => summaries.find((s) => s.phase === ph && s.client === c);
  const pair = (ph: Phase) => {
    const on = at(ph, variant);
    const off = at(ph, "warren-client");
    return on?.applicable && off?.applicable ? div(on.msgsPerSec, off.msgsPerSec) : null;
  };
  const confirm = pair("confirm");
  const consume = pair("consume");
  return confirm === null && consume === null ? null : { confirm, consume };
}

export function headlineLines(h: HeadlineRatios): string[] {
  const out: string[] = [];
  const f = (x: number | null) => (x === null ? "—" : `${x.toFixed(2)}×`);
  if (h.clientVsBestPeer)
    out.push(
      `- Confirms, warren-client vs best peer: throughput ${fmtRatio(h.clientVsBestPeer.throughput, h.clientVsBestPeer.bestThroughputPeer)}, ` +
        `CPU/msg ${fmtRatio(h.clientVsBestPeer.cpu, h.clientVsBestPeer.bestCpuPeer)} (above 1× means warren-client is ahead).`,
    );
  if (h.clientVsWarren)
    out.push(
      `- Confirms, warren-client vs the low-level warren: throughput ${f(h.clientVsWarren.throughput)}, ` +
        `CPU/msg ${f(h.clientVsWarren.cpu)} (warren ÷ warren-client; below 1× is the cost of the supervised layer).`,
    );
  if (h.outboxVsClient)
    out.push(
      `- Confirms, warren-outbox ÷ warren-client: throughput ${f(h.outboxVsClient.throughput)} (target ≥ 0.75×), ` +
        `CPU/msg ${f(h.outboxVsClient.cpu)} (warren-client ÷ warren-outbox).`,
    );
  if (h.observedVsClient)
    out.push(
      `- Metrics and tracing on ÷ off (warren-observed ÷ warren-client): confirms ${f(h.observedVsClient.confirm)}, ` +
        `consume ${f(h.observedVsClient.consume)} (target ≥ 0.95×).`,
    );
  if (h.statusVsClient)
    out.push(
      `- Status page served and watched ÷ not (warren-status ÷ warren-client): confirms ${f(h.statusVsClient.confirm)}, ` +
        `consume ${f(h.statusVsClient.consume)} (target ≥ 0.95×).`,
    );
  if (h.separateVsSingle)
    out.push(
      `- Two connections ÷ one (warren-client ÷ warren-single): confirms ${f(h.separateVsSingle.confirm)}, ` +
        `consume ${f(h.separateVsSingle.consume)}.`,
    );
  return out;
}

/** Lowest and highest repetition, to show how much the medians can be trusted. */
export function spreadTable(
  summaries: Summary[],
  phases: Phase[],
  clients: ClientName[],
  sizes: Sizes,
): string {
  const head = ["Workload", "Metric", ...clients];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`];
  const range = (xs: number[], d: number) =>
    xs.length === 0 ? "—" : `${fmtNum(Math.min(...xs), d)}–${fmtNum(Math.max(...xs), d)}`;
  for (const ph of phases) {
    const rows = clients.map((c) => summaries.find((s) => s.phase === ph && s.client === c)!);
    const large = ph.startsWith("large");
    const cells = (pick: (x: Sample) => number, d: number) =>
      rows
        .map((r) => (r.applicable ? range(r.samples.filter((x) => x.verified).map(pick), d) : "n/a"))
        .join(" | ");
    lines.push(`| ${PHASE_LABEL[ph](sizes)} | msgs/s | ${cells((x) => x.msgsPerSec, large ? 1 : 0)} |`);
    lines.push(`| | CPU µs/msg | ${cells((x) => x.cpuUsPerMsg, large ? 0 : 2)} |`);
  }
  return lines.join("\n");
}
