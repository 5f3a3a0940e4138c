/**
 * The scripted fake servers and low-level connections a test opens: closed after each test (in the
 * describe block the helper is called in), and every fake must have seen no protocol error.
 */
import { afterEach, expect } from "vitest";
import type { Connection } from "../../src/index.js";
import type { FakeServer } from "../fake/server.js";

export function useFakeServers(): { fakes: FakeServer[]; conns: Connection[] } {
  const fakes: FakeServer[] = [];
  const conns: Connection[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) await c.close({ timeout: 200 });
    for (const f of fakes.splice(0)) {
      await f.close();
      expect(f.errors).toEqual([]);
    }
  });
  return { fakes, conns };
}
