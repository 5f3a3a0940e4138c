/**
 * One turn of the event loop (setImmediate): promises settled before it, and what they chain, have
 * run by the time it resolves. No timer is involved, so it is no sleep: for pure code and fakes
 * (machines under a SimulatedClock, a handler that must finish asynchronously).
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
