/**
 * Toxic types of the Toxiproxy-compatible server: their attributes (validation, defaults, partial
 * merges) and what each one does to the chunks of one link (one direction of one connection).
 *
 * A toxic runs as a stage of a link's pipeline (see ./link.ts). A stage reads chunks from its input,
 * passes them on to its output, and may be interrupted at any await (the toxic was updated or
 * removed, or another toxic was added behind it). When interrupted, a stage passes on the data it
 * holds, so nothing is lost or reordered, and returns; the link then restarts it or drops it.
 */

export type Direction = "upstream" | "downstream";

export const TOXIC_TYPES = [
  "latency",
  "bandwidth",
  "slow_close",
  "timeout",
  "reset_peer",
  "slicer",
  "limit_data",
  "noop",
] as const;

export type ToxicType = (typeof TOXIC_TYPES)[number];

export function isToxicType(value: unknown): value is ToxicType {
  return typeof value === "string" && (TOXIC_TYPES as readonly string[]).includes(value);
}

/** Attribute names of each type, in the order they are echoed. All are integers, 0 by default. */
export const ATTRIBUTE_NAMES: Readonly<Record<ToxicType, readonly string[]>> = {
  latency: ["latency", "jitter"],
  bandwidth: ["rate"],
  slow_close: ["delay"],
  timeout: ["timeout"],
  reset_peer: ["timeout"],
  slicer: ["average_size", "size_variation", "delay"],
  limit_data: ["bytes"],
  noop: [],
};

export type Attributes = Record<string, number>;

/** An attribute object that cannot be decoded (answered with 400). */
export class AttributeError extends Error {}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value === "object" ? "object" : typeof value;
}

/**
 * Decodes `input` over `current` (a partial merge: absent attributes keep their value). Keys match
 * case-insensitively and unknown keys are ignored, as with the reference server's JSON decoding.
 */
export function mergeAttributes(
  type: ToxicType,
  current: Attributes | undefined,
  input: unknown,
): Attributes {
  const names = ATTRIBUTE_NAMES[type];
  const out: Attributes = {};
  for (const name of names) out[name] = current?.[name] ?? 0;
  if (input === undefined || input === null) return out;
  if (typeof input !== "object" || Array.isArray(input)) {
    throw new AttributeError(
      `json: cannot unmarshal ${jsonKind(input)} into Go value of type ${type} attributes`,
    );
  }
  const given = input as Record<string, unknown>;
  for (const name of names) {
    const value = field(given, name);
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new AttributeError(
        `json: cannot unmarshal ${jsonKind(value)}${typeof value === "number" ? ` ${value}` : ""} into Go struct field ${name} of type int64`,
      );
    }
    out[name] = value;
  }
  if (type === "bandwidth" && (out["rate"] ?? 0) < 0) {
    throw new AttributeError("rate must not be negative");
  }
  return out;
}

/** A key of a decoded JSON object: the exact name first, else the first case-insensitive match. */
export function field(obj: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name];
  const lower = name.toLowerCase();
  for (const key of Object.keys(obj)) {
    if (key.toLowerCase() === lower) return obj[key];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Stages

/** A piece of data read from a link's source, with the time it arrived (performance.now(), ms). */
export interface Chunk {
  data: Buffer;
  ts: number;
}

/** End of stream: the source ended, or a toxic closed the pipeline. */
export const EOF: unique symbol = Symbol("eof");
/** The stage was interrupted (returned by the waits of StageIO). */
export const INTERRUPTED: unique symbol = Symbol("interrupted");
/** A receive with a time limit found nothing in time. */
export const TIMEOUT: unique symbol = Symbol("timeout");

export type Item = Chunk | typeof EOF;

export type StageResult = "done" | "interrupted";

/** Per-link state of a toxic that survives restarts of its stage (updates, neighbours changing). */
export interface ToxicLinkState {
  bytes: number;
}

/** What a stage can do; implemented by the link. */
export interface StageIO {
  /** The next item of the input, or INTERRUPTED, or TIMEOUT when `timeoutMs` passed first. */
  recv(timeoutMs?: number): Promise<Item | typeof INTERRUPTED | typeof TIMEOUT>;
  /**
   * Passes an item on, waiting while the output is full. Resolves false when the stage was
   * interrupted; the item has been passed on all the same.
   */
  send(item: Item): Promise<boolean>;
  /** Waits `ms` (Infinity: until interrupted). Resolves false when interrupted first. */
  sleep(ms: number): Promise<boolean>;
  /** Closes the whole connection with a TCP reset after `ms`, whatever happens to the stage. */
  resetConnectionAfter(ms: number): void;
  readonly state: ToxicLinkState;
}

const now = (): number => performance.now();

/** A uniform random integer in [min, max); min when the range is empty. */
function randomInt(min: number, max: number): number {
  if (max <= min) return min;
  return min + Math.floor(Math.random() * (max - min));
}

/** Runs one stage of `type` until it is interrupted or its stream is over. */
export function runStage(type: ToxicType, attrs: Attributes, io: StageIO): Promise<StageResult> {
  const a = (name: string): number => attrs[name] ?? 0;
  switch (type) {
    case "noop":
      return passThrough(io, 0);
    case "latency":
      return latency(io, a("latency"), a("jitter"));
    case "bandwidth":
      return bandwidth(io, a("rate"));
    case "slow_close":
      return passThrough(io, a("delay"));
    case "timeout":
      return timeout(io, a("timeout"));
    case "reset_peer":
      return resetPeer(io, a("timeout"));
    case "slicer":
      return slicer(io, a("average_size"), a("size_variation"), a("delay"));
    case "limit_data":
      return limitData(io, a("bytes"));
  }
}

/** Passes everything on; at end of stream waits `closeDelay` ms first (slow_close). */
async function passThrough(io: StageIO, closeDelay: number): Promise<StageResult> {
  for (;;) {
    const item = await io.recv();
    if (item === INTERRUPTED) return "interrupted";
    if (item === TIMEOUT) continue;
    if (item === EOF) {
      if (closeDelay > 0) await io.sleep(closeDelay);
      await io.send(EOF);
      return "done";
    }
    if (!(await io.send(item))) return "interrupted";
  }
}

/**
 * Each chunk leaves at its arrival time plus `latency` ± `jitter` (drawn per chunk), never before
 * the chunk ahead of it. The chunk's timestamp moves to that time, so latency toxics add up.
 */
async function latency(io: StageIO, latencyMs: number, jitterMs: number): Promise<StageResult> {
  for (;;) {
    const item = await io.recv();
    if (item === INTERRUPTED) return "interrupted";
    if (item === TIMEOUT) continue;
    if (item === EOF) {
      await io.send(EOF);
      return "done";
    }
    const delay = latencyMs + (jitterMs > 0 ? randomInt(-jitterMs, jitterMs) : 0);
    const target = item.ts + delay;
    if (!(await io.sleep(target - now()))) {
      await io.send(item);
      return "interrupted";
    }
    item.ts = Math.max(item.ts, target);
    if (!(await io.send(item))) return "interrupted";
  }
}

/**
 * About `rate` bytes per millisecond (rate in KB/s). A chunk larger than 100 ms worth of data goes
 * out in 100 ms pieces. The schedule is kept on absolute times, so timer lateness does not add up;
 * time spent idle or blocked on the output gives no credit. Rate 0 holds the link until the stage
 * is interrupted (the toxic is removed or updated), then passes the held chunk on.
 */
async function bandwidth(io: StageIO, rate: number): Promise<StageResult> {
  let due = now();
  for (;;) {
    const item = await io.recv();
    if (item === INTERRUPTED) return "interrupted";
    if (item === TIMEOUT) continue;
    if (item === EOF) {
      await io.send(EOF);
      return "done";
    }
    if (rate <= 0) {
      await io.sleep(Number.POSITIVE_INFINITY);
      await io.send(item);
      return "interrupted";
    }
    due = Math.max(due, now());
    const piece = rate * 100;
    let data = item.data;
    while (data.length > piece) {
      due += 100;
      if (!(await io.sleep(due - now()))) {
        await io.send({ data, ts: item.ts });
        return "interrupted";
      }
      const head = data.subarray(0, piece);
      data = data.subarray(piece);
      if (!(await io.send({ data: head, ts: item.ts }))) {
        await io.send({ data, ts: item.ts });
        return "interrupted";
      }
    }
    due += data.length / rate;
    if (!(await io.sleep(due - now()))) {
      await io.send({ data, ts: item.ts });
      return "interrupted";
    }
    if (!(await io.send({ data, ts: item.ts }))) return "interrupted";
  }
}

/**
 * Discards every chunk. With `timeoutMs` > 0, closes the pipeline once that long passes without a
 * chunk arriving; with 0, holds the connection open for as long as the toxic exists. (Removing an
 * applied timeout toxic closes the pipeline too: the link does that.)
 */
async function timeout(io: StageIO, timeoutMs: number): Promise<StageResult> {
  for (;;) {
    const item = await io.recv(timeoutMs > 0 ? timeoutMs : undefined);
    if (item === INTERRUPTED) return "interrupted";
    if (item === EOF || item === TIMEOUT) {
      await io.send(EOF);
      return "done";
    }
  }
}

/**
 * Waits for the next chunk (or end of stream), drops it, and resets the connection (TCP RST on
 * both sockets) `timeoutMs` later. The reset happens even if the toxic is removed meanwhile.
 */
async function resetPeer(io: StageIO, timeoutMs: number): Promise<StageResult> {
  for (;;) {
    const item = await io.recv();
    if (item === INTERRUPTED) return "interrupted";
    if (item === TIMEOUT) continue;
    io.resetConnectionAfter(Math.max(0, timeoutMs));
    return "done";
  }
}

/**
 * Cut points (end offsets) splitting [0, length) the way the reference slicer does: a segment
 * longer than average + variation is cut near its middle, moved by a random amount in
 * [-variation, +variation), and both halves are split again.
 */
export function sliceOffsets(length: number, averageSize: number, sizeVariation: number): number[] {
  const ends: number[] = [];
  const stack: Array<[number, number]> = [[0, length]];
  while (stack.length > 0) {
    const [start, end] = stack.pop()!;
    const size = end - start;
    if (size - averageSize <= sizeVariation || size <= 1) {
      ends.push(end);
      continue;
    }
    let mid = start + Math.floor(size / 2);
    if (sizeVariation > 0) mid += randomInt(0, sizeVariation * 2) - sizeVariation;
    mid = Math.min(end - 1, Math.max(start + 1, mid));
    // Right half first on the stack, so the left half is split (and emitted) first.
    stack.push([mid, end], [start, mid]);
  }
  return ends;
}

/** Splits each chunk into slices, sending each after a pause of `delayUs` microseconds. */
async function slicer(
  io: StageIO,
  averageSize: number,
  sizeVariation: number,
  delayUs: number,
): Promise<StageResult> {
  for (;;) {
    const item = await io.recv();
    if (item === INTERRUPTED) return "interrupted";
    if (item === TIMEOUT) continue;
    if (item === EOF) {
      await io.send(EOF);
      return "done";
    }
    const data = item.data;
    let start = 0;
    for (const end of sliceOffsets(data.length, averageSize, sizeVariation)) {
      if (delayUs > 0 && !(await io.sleep(delayUs / 1000))) {
        await io.send({ data: data.subarray(start), ts: item.ts });
        return "interrupted";
      }
      if (!(await io.send({ data: data.subarray(start, end), ts: item.ts }))) {
        if (end < data.length) await io.send({ data: data.subarray(end), ts: item.ts });
        return "interrupted";
      }
      start = end;
    }
  }
}

/**
 * Passes on at most `bytes` bytes over the life of the link (the count is kept across restarts),
 * cutting the chunk that crosses the limit, then closes the pipeline.
 */
async function limitData(io: StageIO, bytes: number): Promise<StageResult> {
  for (;;) {
    const item = await io.recv();
    if (item === INTERRUPTED) return "interrupted";
    if (item === TIMEOUT) continue;
    if (item === EOF) {
      await io.send(EOF);
      return "done";
    }
    let remaining = Math.max(0, bytes - io.state.bytes);
    let passed = true;
    const data = remaining < item.data.length ? item.data.subarray(0, remaining) : item.data;
    if (data.length > 0) {
      io.state.bytes += data.length;
      remaining -= data.length;
      passed = await io.send({ data, ts: item.ts });
    }
    if (remaining <= 0) {
      await io.send(EOF);
      return "done";
    }
    if (!passed) return "interrupted";
  }
}
