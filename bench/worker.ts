/**
 * One client, one workload, one process: forked by run.ts with a Job as JSON in
 * argv[2]; replies over IPC with a WorkerReply and exits. Only the timed phases
 * are measured (wall time and process.cpuUsage()); connecting, the warm-up and
 * closing are not.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { findSourceMap } from "node:module";
import { join } from "node:path";
import { within } from "./clients/pump.js";
import { type BenchClient, loadClient } from "./clients/types.js";
import type { Job, Phase, PhaseResult, ScalePhase, WorkerReply } from "./jobs.js";

const job = JSON.parse(process.argv[2] ?? "{}") as Job;
const gc = (globalThis as { gc?: () => void }).gc;

function body(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = 97 + (i % 26);
  return b;
}

let session: Session | undefined;
const profiles: string[] = [];

async function timed(
  phase: Phase | ScalePhase,
  messages: number,
  bytes: number,
  fn: () => Promise<unknown>,
): Promise<PhaseResult> {
  gc?.();
  if (job.profileDir) {
    session ??= new Session();
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 100 });
    await session.post("Profiler.start");
  }
  const faults0 = process.resourceUsage().minorPageFault;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = await within(fn(), job.phaseTimeoutMs, `${job.client} ${phase}`);
  const t1 = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  const minorPageFaults = process.resourceUsage().minorPageFault - faults0;
  if (session && job.profileDir) {
    const { profile } = await session.post("Profiler.stop");
    mkdirSync(job.profileDir, { recursive: true });
    const file = join(job.profileDir, `${job.client.replace(/[@/]/g, "_")}-${phase}.cpuprofile`);
    writeFileSync(file, JSON.stringify(toSourceLines(profile)));
    profiles.push(file);
    session.disconnect();
    session = undefined;
  }
  const result: PhaseResult = {
    phase,
    messages,
    bytes,
    elapsedMs: Number(t1 - t0) / 1e6,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    minorPageFaults,
  };
  if (Array.isArray(out) || out instanceof Float64Array)
    result.latencyUs = percentiles(out as ArrayLike<number>);
  return result;
}

/** p50 and p99 of the calls' round trips, or of the messages' latencies (nearest rank). */
function percentiles(us: ArrayLike<number>): { p50: number; p99: number } {
  const s = Float64Array.from(us).sort();
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? 0;
  return { p50: at(0.5), p99: at(0.99) };
}

/**
 * tsx runs transpiled, whitespace-minified code, so the profile's positions point into
 * one-line modules; map them back to the TypeScript sources (needs --enable-source-maps).
 */
function toSourceLines<
  P extends { nodes: { callFrame: { url: string; lineNumber: number; columnNumber: number } }[] },
>(profile: P): P {
  for (const { callFrame: f } of profile.nodes) {
    if (!f.url.startsWith("file:") || f.url.includes("/node_modules/")) continue;
    const e = findSourceMap(f.url)?.findEntry(f.lineNumber, f.columnNumber) as
      | { originalSource?: string; originalLine?: number; originalColumn?: number }
      | undefined;
    if (e?.originalSource === undefined) continue;
    f.url = e.originalSource;
    f.lineNumber = e.originalLine ?? 0;
    f.columnNumber = e.originalColumn ?? 0;
  }
  return profile;
}

async function run(c: BenchClient): Promise<PhaseResult[]> {
  const j = job;
  const b = body(j.bodySize);
  const w = j.warmupCount;
  switch (j.workload) {
    case "publish":
      await c.publish(j.warmupQueue, b, w);
      return [await timed("publish", j.count, j.count * j.bodySize, () => c.publish(j.queue, b, j.count))];
    case "confirm":
      await c.publishConfirmed(j.warmupQueue, b, w, j.maxInFlight);
      return [
        await timed("confirm", j.count, j.count * j.bodySize, () =>
          c.publishConfirmed(j.queue, b, j.count, j.maxInFlight),
        ),
      ];
    case "consume":
      await c.consume(j.warmupQueue, w, j.prefetch, j.bodySize);
      return [
        await timed("consume", j.count, j.count * j.bodySize, () =>
          c.consume(j.queue, j.count, j.prefetch, j.bodySize),
        ),
      ];
    case "large": {
      await c.publishConfirmed(j.warmupQueue, b, w, j.maxInFlight);
      await c.consume(j.warmupQueue, w, j.prefetch, j.bodySize);
      const pub = await timed("large-publish", j.count, j.count * j.bodySize, () =>
        c.publishConfirmed(j.queue, b, j.count, j.maxInFlight),
      );
      const sub = await timed("large-consume", j.count, j.count * j.bodySize, () =>
        c.consume(j.queue, j.count, j.prefetch, j.bodySize),
      );
      return [pub, sub];
    }
    case "rpc": {
      const rpc = c.rpc?.bind(c);
      if (rpc === undefined) throw new Error(`${job.client} does not implement the rpc workload`);
      await rpc(j.warmupQueue, b, w, 1);
      await rpc(j.warmupQueue, b, w, j.rpcConcurrency);
      const seq = await timed("rpc-sequential", j.count, j.count * j.bodySize, () =>
        rpc(j.queue, b, j.count, 1),
      );
      const n = j.rpcConcurrentCount;
      const par = await timed("rpc-concurrent", n, n * j.bodySize, () =>
        rpc(j.queue, b, n, j.rpcConcurrency),
      );
      return [seq, par];
    }
    case "consumers": {
      const many = c.consumeMany?.bind(c);
      const queues = j.queues ?? [];
      if (many === undefined) throw new Error(`${job.client} does not implement consumeMany`);
      await many([j.warmupQueue], w, j.prefetch, j.bodySize);
      const each = Math.floor(j.count / queues.length);
      return [
        await timed("consumers", each * queues.length, each * queues.length * j.bodySize, () =>
          many(queues, each, j.prefetch, j.bodySize),
        ),
      ];
    }
    case "publishers": {
      const many = c.publishMany?.bind(c);
      const n = j.parallel ?? 1;
      if (many === undefined) throw new Error(`${job.client} does not implement publishMany`);
      await many(j.warmupQueue, b, w, n, j.maxInFlight);
      return [
        await timed("publishers", j.count, j.count * j.bodySize, () =>
          many(j.queue, b, j.count, n, j.maxInFlight),
        ),
      ];
    }
    case "size": {
      await c.publishConfirmed(j.warmupQueue, b, w, j.maxInFlight);
      await c.consume(j.warmupQueue, w, j.prefetch, j.bodySize);
      const bytes = j.count * j.bodySize;
      const pub = await timed("size-publish", j.count, bytes, () =>
        c.publishConfirmed(j.queue, b, j.count, j.maxInFlight),
      );
      const sub = await timed("size-consume", j.count, bytes, () =>
        c.consume(j.queue, j.count, j.prefetch, j.bodySize),
      );
      return [pub, sub];
    }
    case "pubsub": {
      const noAck = { window: j.maxInFlight, prefetch: j.prefetch, noAck: true };
      const ack = { ...noAck, noAck: false };
      await c.pubsub(j.warmupQueue, b, w, noAck);
      await c.pubsub(j.warmupQueue, b, w, ack);
      const bytes = j.count * j.bodySize;
      const free = await timed("pubsub-noack", j.count, bytes, () => c.pubsub(j.queue, b, j.count, noAck));
      const acked = await timed("pubsub-ack", j.count, bytes, () => c.pubsub(j.queue, b, j.count, ack));
      return [free, acked];
    }
  }
}

function reply(r: WorkerReply): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      console.log(JSON.stringify(r));
      resolve();
    } else process.send(r, () => resolve());
  });
}

async function main(): Promise<void> {
  const c = await loadClient(job.client);
  await c.open({ url: job.url, frameMax: job.frameMax });
  const phases = await run(c);
  await within(c.close(), 10_000, `${job.client} close`).catch(() => undefined);
  await reply({ ok: true, phases, maxRssKiB: process.resourceUsage().maxRSS, profiles });
}

main().then(
  () => process.exit(0),
  async (e: unknown) => {
    await reply({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    process.exit(1);
  },
);
