/**
 * Whether a lost connection follows a stalled event loop, and how to say so. A handler that hogs
 * the CPU stops the heartbeats both ways: ours are not sent, the broker's are not read. The broker
 * (RabbitMQ) then closes the socket after two silent intervals, without connection.close, and the
 * client sees a socket closed (or reset) by the peer once the loop runs again; with that close lost
 * on the way, its own heartbeat timeout fires two intervals later. Either way the network gets the
 * blame unless the error says what the loop did.
 */

/** What is asked of the event-loop monitor (event-loop.ts). */
export interface StallSource {
  now(): number;
  /** The largest delay of the loop (ms) after `since`, one still going on included. */
  peakSince(since: number): number;
}

/**
 * How far back, in heartbeat intervals, a stall can explain a lost connection: the broker closes
 * about two intervals after our last heartbeat, the client's own timeout fires two intervals after
 * the broker's last one, and the JS timers run late on a loaded machine.
 */
export const LOOKBACK_INTERVALS = 4;

/**
 * The stall (ms) behind a connection lost now with heartbeats of `heartbeatSec`, if there was one:
 * at least one interval long (shorter ones do not miss a heartbeat), ended at most
 * LOOKBACK_INTERVALS ago. Undefined with heartbeats off.
 */
export function stallBehind(source: StallSource, heartbeatSec: number): number | undefined {
  if (!(heartbeatSec > 0)) return undefined;
  const interval = heartbeatSec * 1000;
  const peak = source.peakSince(source.now() - LOOKBACK_INTERVALS * interval);
  return peak >= interval ? Math.round(peak) : undefined;
}

const ADVICE =
  "Keep CPU-bound work off the event loop (a worker thread, or slices that yield with setImmediate), or raise the heartbeat interval";

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * For a socket closed or reset by the broker: it closed because it heard nothing. Two intervals of
 * stall are enough on their own (RabbitMQ's limit); a shorter one "most likely" was the cause.
 */
export function brokerDroppedAfterStall(stallMs: number, heartbeatSec: number): string {
  const certain = stallMs >= 2 * heartbeatSec * 1000;
  return `the event loop was blocked for ${seconds(stallMs)}; the broker ${certain ? "" : "most likely "}closed the connection after missed heartbeats (heartbeat ${heartbeatSec} s). ${ADVICE}`;
}

/** For the client's own heartbeat timeout. */
export function timedOutAfterStall(stallMs: number): string {
  return `the event loop was blocked for ${seconds(stallMs)}, so heartbeats were neither sent nor read in time (the broker has most likely closed the connection). ${ADVICE}`;
}
