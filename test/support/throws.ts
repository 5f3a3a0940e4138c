/** What a synchronous call throws (the counterpart of rejection() in ./async.ts). */

/** Runs `fn` and returns what it threw; fails when it returns normally. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw, but the call returned");
}
