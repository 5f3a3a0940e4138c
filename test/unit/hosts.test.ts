/** Node-aware host choice: resting hosts are skipped, never waited for. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { coolDown, nextHost } from "../../machines/hosts.js";

describe("nextHost / coolDown", () => {
  it("takes the next host that is not resting, cyclically", () => {
    expect(nextHost(0, [0, 0, 0], 100)).toBe(1);
    expect(nextHost(2, [0, 0, 0], 100)).toBe(0);
    expect(nextHost(0, [500, 500, 0], 100)).toBe(2);
    expect(nextHost(1, [0, 500, 500], 100)).toBe(0);
  });

  it("when every host rests, takes the one whose rest ends first", () => {
    expect(nextHost(0, [300, 200, 400], 100)).toBe(1);
    expect(nextHost(2, [300, 300, 400], 100)).toBe(0);
  });

  it("a rest that ended counts as none", () => {
    expect(nextHost(0, [0, 100, 500], 100)).toBe(1);
  });

  it("a single host is always the next", () => {
    expect(nextHost(0, [0], 0)).toBe(0);
    expect(nextHost(0, [9999], 0)).toBe(0);
  });

  it("coolDown never shortens a rest and ignores unknown hosts", () => {
    expect(coolDown([0, 500], 1, 300)).toEqual([0, 500]);
    expect(coolDown([0, 500], 0, 300)).toEqual([300, 500]);
    expect(coolDown([0, 500], 5, 300)).toEqual([0, 500]);
  });

  it("property: the choice is a valid host; a free host other than the current one is chosen when there is one", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 1, maxLength: 8 }),
        fc.nat(7),
        fc.integer({ min: 0, max: 1000 }),
        (table, cur, now) => {
          const current = cur % table.length;
          const next = nextHost(current, table, now);
          expect(next).toBeGreaterThanOrEqual(0);
          expect(next).toBeLessThan(table.length);
          const freeOthers = table.map((t, i) => ({ t, i })).filter((x) => x.i !== current && x.t <= now);
          if (freeOthers.length > 0) expect(table[next]!).toBeLessThanOrEqual(now);
          if (freeOthers.length > 0) expect(next).not.toBe(current);
          if (table.every((t) => t > now)) expect(table[next]).toBe(Math.min(...table));
        },
      ),
    );
  });
});
