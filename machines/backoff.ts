/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
 * and Jitter"): the n-th retry waits a uniformly random time in
 * [0, min(max, initial × multiplier^n)]. Pure: the random source is passed in.
 */
export interface BackoffOptions {
  /** First ceiling in ms (default 100). */
  initial: number;
  /** Largest ceiling in ms (default 2000). */
  max: number;
  /** Growth per attempt (default 2). */
  multiplier: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initial: 100, max: 2_000, multiplier: 2 };

/** Delay in ms before retry number `attempt` (0-based); `random` returns [0, 1). */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number): number {
  const ceiling = Math.min(o.max, o.initial * o.multiplier ** Math.min(attempt, 64));
  return Math.floor(random() * ceiling);
}

/**
 * Restart intensity, as Erlang/OTP supervisors: at most `maxRestarts` restarts within
 * `withinMs`; one more and the supervisor gives up (escalates).
 */
export interface IntensityOptions {
  maxRestarts: number;
  withinMs: number;
}

export const DEFAULT_INTENSITY: IntensityOptions = { maxRestarts: 10, withinMs: 30_000 };

/** Restart times still inside the window, plus `now`. */
export function recordRestart(restarts: readonly number[], now: number, o: IntensityOptions): number[] {
  return [...restarts.filter((t) => now - t < o.withinMs), now];
}

/** True when one more restart at `now` would exceed the intensity. */
export function intensityExceeded(restarts: readonly number[], now: number, o: IntensityOptions): boolean {
  return restarts.filter((t) => now - t < o.withinMs).length >= o.maxRestarts;
}
