/** The metrics contract, dashboards/metrics.md, as tests read it. */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** dashboards/metrics.md. */
export const CONTRACT = join(resolve(import.meta.dirname, "..", ".."), "dashboards", "metrics.md");

export interface ContractMetric {
  name: string;
  type: "counter" | "gauge" | "histogram";
  labels: string[];
}

/** The metric tables of dashboards/metrics.md: | `name` | type | labels | meaning |. */
export function readContract(): Map<string, ContractMetric> {
  const metrics = new Map<string, ContractMetric>();
  for (const line of readFileSync(CONTRACT, "utf8").split("\n")) {
    const m = /^\|\s*`(warren_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = m[3]!
      .split(",")
      .map((l) => l.trim())
      .filter(Boolean);
    metrics.set(m[1]!, { name: m[1]!, type: m[2] as ContractMetric["type"], labels });
  }
  return metrics;
}
