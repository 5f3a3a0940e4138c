/**
 * What bench/run.ts and bench/scaling.ts share: the broker administration they do through
 * warren (untimed), forking one worker per measurement, turning a worker's phase into a
 * sample, and the facts written beside the results (versions, commit).
 */
import { execFileSync, fork } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Channel, Connection } from "../src/index.js";
import { pump } from "./clients/pump.js";
import type { ClientName } from "./clients/types.js";
import type { Job, PhaseResult, WorkerReply } from "./jobs.js";
import type { Sample } from "./report.js";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const URL_ = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672";

// ─── broker administration (through warren, untimed) ────────────────────────

export class Admin {
  private conn!: Connection;
  private ch!: Channel;
  private readonly created = new Set<string>();
  private seq = 0;
  brokerVersion = "unknown";

  async open(): Promise<void> {
    this.conn = await Connection.open(URL_);
    const v = this.conn.server?.properties["version"];
    const p = this.conn.server?.properties["product"];
    if (typeof v === "string") this.brokerVersion = `${typeof p === "string" ? p : "broker"} ${v}`;
    await this.openChannel();
  }

  private async openChannel(): Promise<void> {
    this.ch = await this.conn.openChannel();
    await this.ch.confirmSelect();
  }

  async declare(): Promise<string> {
    const name = `warren-bench.${process.pid}.${++this.seq}`;
    await this.ch.queueDeclare({ queue: name, durable: false, autoDelete: false });
    this.created.add(name);
    return name;
  }

  async count(queue: string): Promise<number> {
    return (await this.ch.queueDeclare({ queue, passive: true })).messageCount;
  }

  /** Polls the ready-message count until it is `expected` or `ms` passed; returns the last count. */
  async waitForCount(queue: string, expected: number, ms: number): Promise<number> {
    const deadline = Date.now() + ms;
    let n = await this.count(queue);
    while (n !== expected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      n = await this.count(queue);
    }
    return n;
  }

  async fill(queue: string, count: number, size: number): Promise<void> {
    const b = Buffer.alloc(size, "m");
    await pump(count, 5000, (done, fail) => {
      this.ch.publish("", queue, b).then(done, fail);
      return true;
    });
  }

  async delete(queue: string): Promise<void> {
    if (!this.created.has(queue)) return;
    if (!this.ch.isOpen) await this.openChannel();
    await this.ch.queueDelete({ queue });
    this.created.delete(queue);
  }

  async cleanup(): Promise<void> {
    for (const q of [...this.created]) await this.delete(q).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.cleanup();
    await this.conn.close();
  }
}

// ─── running one worker ─────────────────────────────────────────────────────

export function runWorker(job: Job, timeoutMs: number): Promise<WorkerReply & { stderr: string }> {
  return new Promise((resolve) => {
    const child = fork(join(HERE, "worker.ts"), [JSON.stringify(job)], {
      execArgv: [...process.execArgv, "--expose-gc", ...(job.profileDir ? ["--enable-source-maps"] : [])],
      stdio: ["ignore", "inherit", "pipe", "ipc"],
    });
    let stderr = "";
    let reply: WorkerReply | undefined;
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("message", (m) => {
      reply = m as WorkerReply;
    });
    const timer = setTimeout(() => {
      reply ??= { ok: false, error: `worker timed out after ${timeoutMs} ms` };
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({
        ...(reply ?? { ok: false, error: `worker exited with ${signal ?? `code ${code}`} and no reply` }),
        stderr,
      });
    });
  });
}

/** One phase of a worker as a sample (rates per second, CPU and page faults per message). */
export function sample(
  p: PhaseResult,
  at: { rep: number; position: number },
  maxRssKiB: number,
  verified: boolean,
  note: string | undefined,
): Sample {
  const sec = p.elapsedMs / 1000;
  const s: Sample = {
    rep: at.rep + 1,
    position: at.position + 1,
    msgsPerSec: p.messages / sec,
    mbPerSec: p.bytes / 1e6 / sec,
    cpuUsPerMsg: (p.cpuUserUs + p.cpuSystemUs) / p.messages,
    cpuUserUsPerMsg: p.cpuUserUs / p.messages,
    cpuSystemUsPerMsg: p.cpuSystemUs / p.messages,
    minorPageFaultsPerMsg: p.minorPageFaults / p.messages,
    elapsedMs: Math.round(p.elapsedMs * 10) / 10,
    maxRssKiB,
    verified,
  };
  if (note !== undefined) s.note = note;
  if (p.latencyUs !== undefined) {
    s.p50Us = Math.round(p.latencyUs.p50 * 10) / 10;
    s.p99Us = Math.round(p.latencyUs.p99 * 10) / 10;
  }
  return s;
}

export function versionOf(c: ClientName): string {
  try {
    const path = c.startsWith("warren")
      ? join(HERE, "..", "package.json")
      : join(HERE, "..", "node_modules", c, "package.json");
    return (JSON.parse(readFileSync(path, "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

/** The commit warren's src/ was measured at, "+modified" when src/ differs from it. */
export function gitCommit(): string {
  try {
    const cwd = join(HERE, "..");
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], {
      cwd,
      encoding: "utf8",
    }).trim();
    return dirty ? `${head}+modified` : head;
  } catch {
    return "unknown";
  }
}

export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
}

/**
 * The part of `file` from the line `heading` to its end ("" when absent): bench/RESULTS.md ends
 * with the scaling section, which bench/run.ts keeps when it rewrites the rest.
 */
export function sectionOf(file: string, heading: string): string {
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const i = text.indexOf(`\n${heading}\n`);
  return i < 0 ? "" : text.slice(i + 1);
}

/** Writes `section` (starting with the line `heading`) over that part of `file`, or appends it. */
export function replaceSection(file: string, heading: string, section: string): void {
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  const i = text.indexOf(`\n${heading}\n`);
  const head = (i < 0 ? text : text.slice(0, i)).trimEnd();
  writeFileSync(file, head ? `${head}\n\n${section}` : section);
}

/**
 * Opens the admin connection and, on Ctrl-C or SIGTERM, deletes the run's queues before exiting
 * (a second signal exits at once). `interrupted()` tells the run loop to stop.
 */
export async function openAdmin(): Promise<{ admin: Admin; interrupted: () => boolean }> {
  const admin = new Admin();
  await admin.open();
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error("\ninterrupted: deleting the benchmark's queues");
    void admin.close().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return { admin, interrupted: () => interrupted };
}
