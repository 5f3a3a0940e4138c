/**
 * The metrics options of the public API. prom-client is an optional peer package: these types
 * describe its registry by shape, so warren's published types compile in a service that has not
 * installed it (`skipLibCheck: false`).
 */

/**
 * A prom-client `Registry` (`new Registry()`, or prom-client's default `register`), described by
 * the part warren's types need: any prom-client registry is one.
 */
export interface MetricsRegistry {
  /** The registry's metrics in Prometheus' text format. */
  metrics(): Promise<string>;
  /** The Content-Type of that text. */
  readonly contentType: string;
  /** The metric registered under `name`, if any. */
  getSingleMetric(name: string): unknown;
}

/** `connect({ metrics })`: where warren's Prometheus metrics go. docs/observability.md. */
export interface MetricsOptions {
  /** Where the metrics are registered (a prom-client Registry). Default: prom-client's default registry. */
  registry?: MetricsRegistry;
  /**
   * Distinct `exchange` values, and distinct `queue` values, one client labels at most
   * (default 100); later ones are counted under `_other`.
   */
  maxLabelValues?: number;
}
