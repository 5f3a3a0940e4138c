/**
 * The brokers a client uses: their URLs (shuffled once when asked, so a fleet spreads over the
 * nodes), their host:port names for events and errors (never credentials), and per host the
 * attempts made and the last error, for ReadyTimeoutError and hostAttempts().
 */
import { redactUrl } from "../amqp/url.js";
import { ConfigError, type HostAttempts } from "../errors.js";

export class Hosts {
  readonly urls: readonly string[];
  /** host:port of each URL. */
  readonly names: readonly string[];
  private readonly log = new Map<string, { attempts: number; lastError: string | undefined }>();

  constructor(urls: readonly string[], shuffle: boolean, random = Math.random) {
    if (urls.length === 0) throw new ConfigError("connect() needs at least one URL");
    this.urls = shuffle ? shuffled(urls, random) : [...urls];
    this.names = this.urls.map(hostOf);
  }

  /** The URL of host `index` (the connection machine's index, modulo the count). */
  url(index: number): string {
    return this.urls[index % this.urls.length] as string;
  }

  /** host:port of host `index`. */
  name(index: number): string {
    return this.names[index % this.names.length] ?? "";
  }

  /** An attempt on `host` (a name) began. */
  attempted(host: string): void {
    this.entry(host).attempts++;
  }

  /** An attempt on `host` failed with `error` (its message carries no credentials). */
  failed(host: string, error: Error): void {
    this.entry(host).lastError = `${error.name}: ${error.message}`;
  }

  /** Each host tried so far, with its attempts and last error. */
  attempts(): HostAttempts[] {
    return [...this.log].map(([host, h]) => ({ host, attempts: h.attempts, lastError: h.lastError }));
  }

  /** The URLs without passwords. */
  redacted(): string[] {
    return this.urls.map(redactUrl);
  }

  private entry(host: string): { attempts: number; lastError: string | undefined } {
    let h = this.log.get(host);
    if (h === undefined) {
      h = { attempts: 0, lastError: undefined };
      this.log.set(host, h);
    }
    return h;
  }
}

/** A Fisher–Yates shuffled copy. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** host:port of an AMQP URL (no credentials). */
export function hostOf(url: string): string {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === "amqps:" ? "5671" : "5672");
    return `${u.hostname}:${port}`;
  } catch {
    return redactUrl(url);
  }
}
