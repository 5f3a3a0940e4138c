/**
 * The metric catalogue (src/observability/metrics/catalogue.ts) against its contract,
 * dashboards/metrics.md: the same names, types and labels, both ways, without a broker.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { metricsFor } from "../../src/observability/metrics/catalogue.js";

const CONTRACT = join(import.meta.dirname, "..", "..", "dashboards", "metrics.md");

/** `| \`name\` | type | labels | meaning |` rows: name → "type: label, label". */
function contract(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(CONTRACT, "utf8").split("\n")) {
    const m = /^\|\s*`(warren_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = m[3]!
      .split(",")
      .map((l) => l.trim())
      .filter(Boolean);
    out.set(m[1]!, `${m[2]}: ${labels.join(", ")}`);
  }
  return out;
}

/** What a fresh registry holds once the catalogue made its metrics: name → "type: label, label". */
function catalogue(): Map<string, string> {
  const registry = new Registry();
  metricsFor(registry);
  const out = new Map<string, string>();
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as { name: string; type: string; labelNames: string[] };
    out.set(m.name, `${m.type}: ${m.labelNames.join(", ")}`);
  }
  return out;
}

describe("metric catalogue", () => {
  it("has exactly the metrics of dashboards/metrics.md, with their types and labels", () => {
    const documented = contract();
    expect(documented.size).toBeGreaterThan(30);
    expect(Object.fromEntries(catalogue())).toEqual(Object.fromEntries(documented));
  });

  it("is made once per registry", () => {
    const registry = new Registry();
    expect(metricsFor(registry)).toBe(metricsFor(registry));
    expect(metricsFor(new Registry())).not.toBe(metricsFor(registry));
  });
});
