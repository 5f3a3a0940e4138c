/**
 * What the kernel says about the fault proxy's TCP sockets (`ss -tin`, Linux): how the bytes the
 * proxy sent were cut into segments, and which of its client connections are half-closed. Some
 * toxics show nowhere else: TCP may merge a slicer's pieces again before the client reads them, and
 * warren does not wait for the peer's FIN after connection.close-ok, so a slow_close is invisible to
 * it. Works for the in-process proxy and for a real Toxiproxy on this host (`ss -p` names its process).
 */
import { execFileSync } from "node:child_process";
import { run } from "../../test/support/broker.js";
import type { ChaosEnv } from "./harness.js";

/** Whether `ss` (iproute2) can be run here. */
export function ssAvailable(): boolean {
  try {
    execFileSync("ss", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Bytes and the TCP segments that carried them. */
export interface Segments {
  bytes: number;
  segments: number;
}

/** One socket's counters: what it sent and what it received. */
interface Counters {
  sent: Segments;
  received: Segments;
}

/** Per-socket counters, keyed by "local peer". */
export type SocketCounters = Map<string, Counters>;

/** The proxy's sockets: those facing the client (on the listen port) and those facing the broker. */
export interface ProxySockets {
  client: SocketCounters;
  broker: SocketCounters;
}

function port(address: string): string {
  return address.slice(address.lastIndexOf(":") + 1);
}

/** `ss -H <args>` split into one record per socket (its first line and its info line joined). */
async function ss(args: string[]): Promise<string[]> {
  const out = await run("ss", ["-H", ...args], { timeoutMs: 10_000 });
  const records: string[] = [];
  for (const line of out.split("\n")) {
    if (line.trim() === "") continue;
    if (/^\s/.test(line) && records.length > 0) records[records.length - 1] += ` ${line.trim()}`;
    else records.push(line.trim());
  }
  return records;
}

function counter(record: string, key: string): number {
  const m = new RegExp(`\\b${key}:(\\d+)`).exec(record);
  return m ? Number(m[1]) : 0;
}

/** "local peer" of an `ss -t` record (the first two address:port fields; the state column is left out under a state filter). */
function key(record: string): string {
  const [local, peer] = record.split(/\s+/).filter((f) => /^[[\]\w.:%*-]+:\d+$/.test(f));
  return `${local} ${peer}`;
}

/** The pid of the process listening on the proxy's port (this process for the in-process proxy). */
async function proxyPid(env: ChaosEnv): Promise<string> {
  const [listening] = await ss(["-tlnp", "sport", "=", `:${port(env.listen)}`]);
  const pid = listening === undefined ? undefined : /pid=(\d+)/.exec(listening)?.[1];
  if (pid === undefined) throw new Error(`ss shows no process listening on ${env.listen}`);
  return pid;
}

/**
 * The counters of the proxy's connections, now: facing the client, its sockets on the listen port;
 * facing the broker, the proxy process's sockets to the upstream port (during a scenario those
 * belong to this proxy's client connections only).
 */
export async function proxySockets(env: ChaosEnv): Promise<ProxySockets> {
  const pid = await proxyPid(env);
  const read = (records: string[]): SocketCounters =>
    new Map(
      records.map((r) => [
        key(r),
        {
          sent: { bytes: counter(r, "bytes_sent"), segments: counter(r, "data_segs_out") },
          received: { bytes: counter(r, "bytes_received"), segments: counter(r, "data_segs_in") },
        },
      ]),
    );
  const client = await ss(["-tin", "state", "established", "sport", "=", `:${port(env.listen)}`]);
  const broker = await ss(["-tinp", "state", "established", "dport", "=", `:${port(env.upstream)}`]);
  return { client: read(client), broker: read(broker.filter((r) => r.includes(`pid=${pid},`))) };
}

function since(before: SocketCounters, after: SocketCounters, which: keyof Counters): Segments {
  let bytes = 0;
  let segments = 0;
  for (const [k, now] of after) {
    const then = before.get(k)?.[which] ?? { bytes: 0, segments: 0 };
    bytes += now[which].bytes - then.bytes;
    segments += now[which].segments - then.segments;
  }
  return { bytes, segments };
}

/** What the proxy received and what it passed on, one way. */
export interface Forwarded {
  /** From the sender (the client upstream, the broker downstream). */
  in: Segments;
  /** To the receiver. */
  out: Segments;
}

/**
 * What the proxy received and sent each way between two readings (a socket new in `after` counts
 * whole). Unharmed, the proxy writes each chunk it reads as it came, so it sends no more segments
 * than it received.
 */
export function forwardedSince(
  before: ProxySockets,
  after: ProxySockets,
): { upstream: Forwarded; downstream: Forwarded } {
  return {
    upstream: {
      in: since(before.client, after.client, "received"),
      out: since(before.broker, after.broker, "sent"),
    },
    downstream: {
      in: since(before.broker, after.broker, "received"),
      out: since(before.client, after.client, "sent"),
    },
  };
}

/**
 * The proxy's client-side connections that the client has closed but the proxy holds open
 * (TCP CLOSE-WAIT on the listen port): what a slow_close toxic does after the broker hung up.
 */
export async function halfClosedClientSockets(env: ChaosEnv): Promise<number> {
  return (await ss(["-tn", "state", "close-wait", "sport", "=", `:${port(env.listen)}`])).length;
}
