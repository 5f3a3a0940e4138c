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

/**
 * What an exceeded restart intensity does at the top of the tree. Not death: as Kubernetes'
 * CrashLoopBackOff, the connection is `degraded` and its backoff grows, level by level, up to
 * `maxBackoff`; once the connection has stayed up for `resetAfterMs` it is healthy again.
 */
export interface EscalationOptions {
  /** Ceiling of the escalated backoff (ms, default 30000). */
  maxBackoff: number;
  /** How long the connection must stay up for the degraded condition and its level to reset (ms, default 30000). */
  resetAfterMs: number;
}

export const DEFAULT_ESCALATION: EscalationOptions = { maxBackoff: 30_000, resetAfterMs: 30_000 };

/**
 * Delay in ms before the next attempt at escalation `level` (1 = the intensity was exceeded once
 * since the connection was last healthy): the ceiling doubles per level from the plain backoff's
 * largest ceiling (at least 1 s) up to `maxBackoff`, and the delay is drawn from its upper half, so
 * the growth is seen ("equal jitter": still spread, never back to a few ms).
 */
export function escalatedDelay(
  level: number,
  plain: BackoffOptions,
  o: EscalationOptions,
  random: () => number,
): number {
  if (level <= 0) return 0;
  const base = Math.max(plain.max, 1_000);
  const ceiling = Math.min(o.maxBackoff, base * 2 ** Math.min(level - 1, 32));
  return Math.floor(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * The caller's opt-in limit (`giveUpAfter`): give up after this many failed attempts and restarts,
 * or this long, since the connection was last healthy. Without it a transient fault is never fatal.
 */
export interface GiveUpOptions {
  attempts?: number;
  ms?: number;
}

/** True when one more failure (the `attempts`-th since healthy, at `now`) reaches the caller's limit. */
export function givingUp(
  g: GiveUpOptions | undefined,
  attempts: number,
  troubleSince: number | undefined,
  now: number,
): boolean {
  if (g === undefined) return false;
  if (g.attempts !== undefined && attempts >= g.attempts) return true;
  return g.ms !== undefined && troubleSince !== undefined && now - troubleSince >= g.ms;
}
