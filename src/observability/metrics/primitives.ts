/**
 * The metric primitives of the hot paths: counters kept as plain numbers and histogram series
 * bound once, handed to prom-client only when a registry is collected.
 */
import type { Counter, Histogram, Registry } from "prom-client";
import { type PromClientModule, promClient } from "./prom.js";

/**
 * A counter series fed from a hot path: a plain number, added to its prom-client series when the
 * registry is collected (prom-client's own children hash their labels on every increment).
 */
export class Count {
  n = 0;
  private flushed = 0;

  constructor(private readonly target: Counter.Internal) {
    target.inc(0); // the series exists from the start, at 0
  }

  inc(): void {
    this.n++;
  }

  flush(): void {
    if (this.n === this.flushed) return;
    this.target.inc(this.n - this.flushed);
    this.flushed = this.n;
  }
}

/** One labelled series of a SeriesHistogram: observe() is a bucket search and three additions. */
export class Series {
  readonly buckets: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.buckets = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.buckets[i] = this.buckets[i]! + 1;
    this.sum += value;
    this.count++;
  }

  clear(): void {
    this.buckets.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

type HistogramExport<L extends string> = Awaited<ReturnType<Histogram<L>["get"]>>;

/** A histogram's name, help, labels and buckets. */
interface HistogramMeta<L extends string> {
  name: string;
  help: string;
  labelNames: L[];
  buckets: number[];
}

/**
 * A prom-client Histogram (registered, exposed and typed as one) whose series are plain objects:
 * `series(labels)` is looked up once per exchange, queue or method, and observing does not go
 * through prom-client's per-call label validation and hashing. Exported in prom-client's format.
 */
export interface SeriesHistogram<L extends string> extends Histogram<L> {
  /** The series for these labels (created at 0 on first use). */
  series(labels: Record<L, string>): Series;
}

type SeriesHistogramClass = new <L extends string>(
  meta: HistogramMeta<L>,
  registry: Registry,
) => SeriesHistogram<L>;

let seriesHistogramClass: SeriesHistogramClass | undefined;

/** A new SeriesHistogram registered in `registry` (loads prom-client: src/observability/metrics/prom.ts). */
export function seriesHistogram<L extends string>(
  meta: HistogramMeta<L>,
  registry: Registry,
): SeriesHistogram<L> {
  seriesHistogramClass ??= defineSeriesHistogram(promClient().Histogram);
  return new seriesHistogramClass(meta, registry);
}

/** The class, defined once prom-client is loaded: it extends prom-client's Histogram. */
function defineSeriesHistogram(Base: PromClientModule["Histogram"]): SeriesHistogramClass {
  return class SeriesHistogramImpl<L extends string> extends Base<L> implements SeriesHistogram<L> {
    private readonly all = new Map<string, Series>();

    constructor(
      private readonly meta: HistogramMeta<L>,
      registry: Registry,
    ) {
      super({ ...meta, registers: [registry] });
    }

    series(labels: Record<L, string>): Series {
      const key = this.meta.labelNames.map((l) => labels[l]).join("\u0000");
      let s = this.all.get(key);
      if (s === undefined) {
        s = new Series({ ...labels }, this.meta.buckets);
        this.all.set(key, s);
      }
      return s;
    }

    override async get(): Promise<HistogramExport<L>> {
      return this.export();
    }

    /** What prom-client's Registry formats (it prefers this to get() when present). */
    async getForPromString(): Promise<HistogramExport<L>> {
      return this.export();
    }

    override reset(): void {
      super.reset();
      // prom-client's constructor calls reset() before this class's fields exist.
      const all = this.all as Map<string, Series> | undefined;
      if (all !== undefined) for (const s of all.values()) s.clear();
    }

    private export(): HistogramExport<L> {
      const { name, help, buckets } = this.meta;
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const s of this.all.values()) {
        let acc = 0;
        for (let i = 0; i < buckets.length; i++) {
          acc += s.buckets[i]!;
          values.push({ labels: { ...s.labels, le: buckets[i]! }, value: acc, metricName: `${name}_bucket` });
        }
        values.push({ labels: { ...s.labels, le: "+Inf" }, value: s.count, metricName: `${name}_bucket` });
        values.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
        values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
      }
      return { name, help, type: "histogram", values, aggregator: "sum" } as unknown as HistogramExport<L>;
    }
  };
}
