import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { metricsFor } from "../../src/observability/metrics/catalogue.js";
import { readContract } from "../support/metrics-contract.js";

/** The contract's rows: name → "type: label, label". */
function contract(): Map<string, string> {
  return new Map([...readContract()].map(([name, m]) => [name, `${m.type}: ${m.labels.join(", ")}`]));
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
