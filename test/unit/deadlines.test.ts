/** One timer for many deadlines: each item expires at its own deadline, settled ones never. */
import { spawnSync } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Deadlines } from "../../src/client/deadlines.js";

interface Item {
  name: string;
  deadline: number;
}

describe("Deadlines", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("expires each item at its own deadline, whatever the order they came in, with one timer", () => {
    const expired: string[] = [];
    const d = new Deadlines<Item>(
      (i) => expired.push(`${i.name}@${Date.now()}`),
      () => Date.now(),
    );
    const t0 = Date.now();
    d.add({ name: "a", deadline: t0 + 1000 });
    d.add({ name: "b", deadline: t0 + 300 }); // earlier: re-arms
    d.add({ name: "c", deadline: t0 + 1000 });
    d.add({ name: "d", deadline: t0 + 5000 });
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(299);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual([`b@${t0 + 300}`]);
    vi.advanceTimersByTime(700);
    expect(expired).toEqual([`b@${t0 + 300}`, `a@${t0 + 1000}`, `c@${t0 + 1000}`]);
    expect(d.size).toBe(1);
    vi.advanceTimersByTime(4000);
    expect(expired.at(-1)).toBe(`d@${t0 + 5000}`);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("never expires an item deleted in time, and re-arms nothing once empty", () => {
    const expired: string[] = [];
    const d = new Deadlines<Item>(
      (i) => expired.push(i.name),
      () => Date.now(),
    );
    const a = { name: "a", deadline: Date.now() + 100 };
    const b = { name: "b", deadline: Date.now() + 200 };
    d.add(a);
    d.add(b);
    d.delete(a);
    vi.advanceTimersByTime(150); // a's deadline passes: the timer fires, nothing due, re-armed for b
    expect(expired).toEqual([]);
    d.delete(b);
    vi.advanceTimersByTime(1000); // b's deadline passes: the kept timer fires, nothing due, nothing re-armed
    expect(expired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("items one after the other reuse one timer, and an empty one does not hold the process", () => {
    const expired: string[] = [];
    const created = vi.spyOn(globalThis, "setTimeout");
    const d = new Deadlines<Item>(
      (i) => expired.push(i.name),
      () => Date.now(),
    );
    for (let i = 0; i < 100; i++) {
      const item = { name: `call${i}`, deadline: Date.now() + 30_000 };
      d.add(item);
      vi.advanceTimersByTime(1);
      d.delete(item);
    }
    expect(created).toHaveBeenCalledTimes(1);
    created.mockRestore();
    expect(expired).toEqual([]);
  });

  it("lets expire() add new items: they get their own deadline", () => {
    const expired: string[] = [];
    let d!: Deadlines<Item>;
    d = new Deadlines<Item>(
      (i) => {
        expired.push(i.name);
        if (i.name === "first") d.add({ name: "second", deadline: Date.now() + 50 });
      },
      () => Date.now(),
    );
    d.add({ name: "first", deadline: Date.now() + 10 });
    vi.advanceTimersByTime(10);
    expect(expired).toEqual(["first"]);
    vi.advanceTimersByTime(49);
    expect(expired).toEqual(["first"]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(["first", "second"]);
  });

  it("a deadline past setTimeout's limit waits (re-arming), never firing at once", () => {
    const expired: string[] = [];
    const d = new Deadlines<Item>(
      (i) => expired.push(i.name),
      () => Date.now(),
    );
    d.add({ name: "far", deadline: Date.now() + 30 * 24 * 3600 * 1000 });
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(30 * 24 * 3600 * 1000);
    expect(expired).toEqual(["far"]);
  });
});

describe("Deadlines and the process's life", () => {
  /** Runs a child that adds one item due in `dueMs`, deleting it after 10 ms when `settle`. */
  function child(dueMs: number, settle: boolean): { stdout: string; status: number | null } {
    const script = [
      'import { Deadlines } from "./src/client/deadlines.ts";',
      'const d = new Deadlines(() => console.log("expired"));',
      `const item = { deadline: performance.now() + ${dueMs} };`,
      "d.add(item);",
      settle ? "setTimeout(() => d.delete(item), 10);" : "",
      'process.on("exit", () => console.log("exit after " + Math.round(performance.now() - start) + " ms"));',
      "const start = performance.now();",
    ].join("\n");
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 60_000,
    });
    return { stdout: r.stdout, status: r.status };
  }

  it("a waiting item holds the process open until it expires; once settled, nothing does", () => {
    const waiting = child(300, false);
    expect(waiting.status).toBe(0);
    expect(waiting.stdout).toMatch(/^expired\nexit after \d+ ms\n$/);
    // Due in 60 s, settled after 10 ms: the process ends long before the kept timer would fire.
    const settled = child(60_000, true);
    expect(settled.status).toBe(0);
    expect(settled.stdout).not.toContain("expired");
    expect(Number(/exit after (\d+) ms/.exec(settled.stdout)?.[1])).toBeLessThan(30_000);
  });
});
