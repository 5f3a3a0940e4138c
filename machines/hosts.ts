/**
 * Node-aware host choice for reconnecting (pure). A host whose connection died or that refused
 * us rests for a cool-down; the next attempt goes to the next host in the list that is not
 * resting, so after a node dies the others are tried first. When every host rests, the one whose
 * cool-down ends first is tried anyway: a cool-down orders the hosts, it never stalls recovery.
 */

/** Default cool-down of a host that died or refused, in ms. */
export const DEFAULT_HOST_COOLDOWN = 10_000;

/** The host after `current` (cyclically) that is not cooling down at `now`, else the one that cools first. */
export function nextHost(current: number, cooldownUntil: readonly number[], now: number): number {
  const n = cooldownUntil.length;
  if (n <= 1) return 0;
  let best = (current + 1) % n;
  for (let k = 1; k <= n; k++) {
    const i = (current + k) % n;
    const until = cooldownUntil[i] ?? 0;
    if (until <= now) return i;
    if (until < (cooldownUntil[best] ?? 0)) best = i;
  }
  return best;
}

/** The cool-down table with host `index` resting until `until`. */
export function coolDown(cooldownUntil: readonly number[], index: number, until: number): number[] {
  const out = [...cooldownUntil];
  if (index >= 0 && index < out.length) out[index] = Math.max(out[index] ?? 0, until);
  return out;
}
