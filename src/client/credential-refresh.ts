/**
 * Keeps an open connection's credentials fresh: credentials that expire (a provider's `expiresAt`,
 * e.g. an OAuth 2.0 token's `exp`) are replaced before they do, on the open connection, with
 * RabbitMQ's connection.update-secret: no reconnect, nothing interrupted.
 *
 *   refreshAt = expiresAt - margin   margin = max(marginRatio × lifetime, minMarginMs), at most lifetime/2
 *   deadline  = expiresAt - guard    guard = min(1 s, lifetime/10)
 *
 * A refresh that fails (the provider throws or times out, no update-secret-ok in time) is reported
 * and retried with a doubling, jittered delay. At the deadline, with no refresh done, the connection
 * is closed with CredentialsError "expired" and the client opens it again with new credentials:
 * RabbitMQ 3.10 keeps a connection whose token expired but refuses its operations (403 on every
 * publish), later versions close it; either way it is of no use. A secret the broker refuses (530
 * in reply to update-secret) closes the connection; `explain()` turns that close into a recoverable
 * CredentialsError "refused", so the client logs in again with new credentials rather than fail.
 *
 * Timers and the clock are injected (`RefreshTimers`), the connection is a narrow `SecretTarget`:
 * unit tests drive it with fake ones.
 */
import { type ConnectionClosedByBroker, CredentialsError } from "../errors.js";
import { isReported } from "../faults.js";
import {
  type CredentialRefreshOptions,
  CredentialSource,
  type Credentials,
  type CredentialsProvider,
  type LoginCredentials,
  type RefreshPolicy,
} from "./credentials.js";

/** What the refresher needs of a connection. */
export interface SecretTarget {
  readonly isOpen: boolean;
  updateSecret(secret: string, reason: string): void;
  on(event: "secretUpdated", fn: () => void): unknown;
  off(event: "secretUpdated", fn: () => void): unknown;
}

/** The clock and timers (real ones by default). */
export interface RefreshTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

export const REAL_TIMERS: RefreshTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  random: () => Math.random(),
};

/**
 * Each time credentials were asked for or refreshed, and how it went (the metric's `outcome`):
 * ok (a refresh took: update-secret-ok), provider_error, malformed, timeout (no update-secret-ok in
 * time), refused (the broker refused credentials from the provider: a login, or a refreshed secret).
 */
export type CredentialOutcome = "ok" | "provider_error" | "malformed" | "timeout" | "refused";

/**
 * A `credentials` event: the provider was asked, or credentials refreshed, and how it went. Never the
 * credentials themselves.
 */
export interface CredentialsChange {
  /**
   * ok (a refresh took: the broker answered update-secret-ok), provider_error (the provider threw,
   * rejected or timed out), malformed (its answer is not credentials), timeout (no update-secret-ok
   * in time), refused (the broker refused credentials from the provider).
   */
  outcome: CredentialOutcome;
  /** When the credentials in use on the connection expire (ms since the epoch), after an ok refresh. */
  expiresAt: number | undefined;
  /** Why, for any outcome but ok (a CredentialsError, with no password or token in it). */
  error: Error | undefined;
}

/** Told of every outcome (metrics, the client's `credentials` and `error` events). */
export type CredentialObserver = (
  outcome: CredentialOutcome,
  error?: CredentialsError,
  expiresAt?: number,
) => void;

/** When to refresh credentials, and when to give the connection up if no refresh succeeded. */
export function refreshPlan(
  creds: LoginCredentials,
  policy: RefreshPolicy,
): { refreshAt: number; deadline: number } | undefined {
  if (creds.expiresAt === undefined) return undefined;
  const lifetime = Math.max(0, creds.expiresAt - creds.obtainedAt);
  const margin = Math.min(Math.max(policy.marginRatio * lifetime, policy.minMarginMs), lifetime / 2);
  const guard = Math.min(1000, lifetime / 10);
  return { refreshAt: creds.expiresAt - margin, deadline: creds.expiresAt - guard };
}

/** The wait before retry number `failures + 1`: doubling from retryInitialMs up to retryMaxMs, the upper half jittered. */
export function retryDelay(failures: number, policy: RefreshPolicy, random: () => number): number {
  const ceiling = Math.min(policy.retryMaxMs, policy.retryInitialMs * 2 ** Math.min(failures, 30));
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** Refreshes one open connection's credentials until stop(). */
export class SecretRefresher {
  private creds: LoginCredentials;
  private failures = 0;
  private stopped = false;
  private refreshTimer: unknown;
  private deadlineTimer: unknown;
  /** Ends a wait for update-secret-ok (with false) when stopped. */
  private endWait: (() => void) | undefined;
  /** The error this refresher closed the connection with. */
  private lostWith: CredentialsError | undefined;
  /** An update-secret was sent and its reply has not come. */
  private updating = false;

  constructor(
    private readonly target: SecretTarget,
    creds: LoginCredentials,
    private readonly policy: RefreshPolicy,
    private readonly hooks: {
      fetch(): Promise<LoginCredentials>;
      observe: CredentialObserver;
      /** Close this connection: `error` is why (explain() gives it back). */
      lose(error: CredentialsError): void;
    },
    private readonly timers: RefreshTimers = REAL_TIMERS,
  ) {
    this.creds = creds;
    this.schedule();
  }

  /** When the credentials in use expire (ms since the epoch), if they do. */
  get expiresAt(): number | undefined {
    return this.creds.expiresAt;
  }

  /**
   * Why the connection closed, as far as its credentials tell: the CredentialsError it was closed
   * with, or a recoverable CredentialsError "refused" for a secret the broker refused; else `error`.
   */
  explain<E extends Error>(error: E | undefined): E | CredentialsError | undefined {
    if (this.lostWith) return this.lostWith;
    const close = error as Partial<ConnectionClosedByBroker> | undefined;
    if (close?.code === "CONNECTION_CLOSED_BY_BROKER" && close.methodName === "connection.update-secret") {
      const refused = new CredentialsError(
        `the broker refused the refreshed credentials (${close.replyCode} ${close.replyText}); reconnecting with new ones from the provider`,
        { reason: "refused", cause: error },
      );
      this.hooks.observe("refused", refused);
      return refused;
    }
    return error;
  }

  /** Stops refreshing (the connection closed). */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.endWait?.();
  }

  private schedule(): void {
    this.clearTimers();
    const plan = refreshPlan(this.creds, this.policy);
    if (!plan || this.stopped) return;
    const now = this.timers.now();
    this.refreshTimer = this.timers.setTimeout(() => void this.refresh(), Math.max(0, plan.refreshAt - now));
    this.deadlineTimer = this.timers.setTimeout(() => this.expired(), Math.max(0, plan.deadline - now));
  }

  private clearTimers(): void {
    if (this.refreshTimer !== undefined) this.timers.clearTimeout(this.refreshTimer);
    if (this.deadlineTimer !== undefined) this.timers.clearTimeout(this.deadlineTimer);
    this.refreshTimer = this.deadlineTimer = undefined;
  }

  private async refresh(): Promise<void> {
    this.refreshTimer = undefined;
    if (this.stopped) return;
    let next: LoginCredentials;
    try {
      next = await this.hooks.fetch(); // observes provider_error and malformed itself
    } catch (e) {
      if (this.stopped) return;
      const error = e as CredentialsError;
      if (error.recoverable === false) this.lose(error);
      else this.retry();
      return;
    }
    if (this.stopped || !this.target.isOpen) return;
    try {
      this.target.updateSecret(next.password, "credentials refreshed");
    } catch {
      return; // closed meanwhile: the close is handled where it is watched
    }
    this.updating = true;
    const took = await this.secretUpdated();
    this.updating = false;
    if (this.stopped) return;
    if (!took) {
      const error = new CredentialsError(
        `the broker did not answer connection.update-secret within ${this.policy.timeoutMs} ms; retrying the refresh`,
        { reason: "provider" },
      );
      this.hooks.observe("timeout", error);
      this.retry();
      return;
    }
    this.failures = 0;
    this.creds = next;
    this.hooks.observe("ok", undefined, next.expiresAt);
    this.schedule();
  }

  /** Resolves true on update-secret-ok, false after timeoutMs or on stop(). */
  private secretUpdated(): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (took: boolean) => {
        this.target.off("secretUpdated", onOk);
        this.timers.clearTimeout(timer);
        this.endWait = undefined;
        resolve(took);
      };
      const onOk = () => done(true);
      const timer = this.timers.setTimeout(() => done(false), this.policy.timeoutMs);
      this.endWait = () => done(false);
      this.target.on("secretUpdated", onOk);
    });
  }

  private retry(): void {
    if (this.stopped) return;
    const delay = retryDelay(this.failures++, this.policy, this.timers.random);
    this.refreshTimer = this.timers.setTimeout(() => void this.refresh(), delay);
  }

  private expired(): void {
    this.deadlineTimer = undefined;
    if (this.stopped) return;
    const at =
      this.creds.expiresAt === undefined ? "" : ` at ${new Date(this.creds.expiresAt).toISOString()}`;
    this.lose(
      new CredentialsError(
        `the credentials expire${at} and no refresh succeeded${this.updating ? " (update-secret unanswered)" : ""}; reconnecting with new ones from the provider`,
        { reason: "expired" },
      ),
    );
  }

  private lose(error: CredentialsError): void {
    if (this.lostWith) return;
    this.lostWith = error;
    this.stopped = true;
    this.clearTimers();
    this.endWait?.();
    this.hooks.lose(error);
  }
}

/**
 * A client's credentials: asked for before each login (one more login with new ones after a refused
 * one), and kept fresh on each open connection. The connection actors hold one.
 */
export class CredentialKeeper {
  /** The credentials each open connection logged in with. */
  private readonly logins = new WeakMap<object, LoginCredentials>();

  constructor(
    private readonly source: CredentialSource,
    private readonly observe: CredentialObserver,
    private readonly timers: RefreshTimers = REAL_TIMERS,
  ) {}

  /** Opens a connection with credentials from the source (see CredentialSource.open). */
  async open<C extends object>(open: (creds: LoginCredentials) => Promise<C>): Promise<C> {
    let refused = false;
    const { conn, creds } = await this.source.open((c) => {
      if (refused) this.observe("refused");
      refused = true;
      return open(c);
    });
    this.logins.set(conn, creds);
    return conn;
  }

  /** Keeps `conn`'s credentials fresh until the refresher is stopped; `lose` closes it. */
  keepFresh(conn: SecretTarget, lose: (error: CredentialsError) => void): SecretRefresher | undefined {
    const creds = this.logins.get(conn);
    if (!creds) return undefined;
    return new SecretRefresher(
      conn,
      creds,
      this.source.policy,
      { fetch: () => this.source.fetch(), observe: this.observe, lose },
      this.timers,
    );
  }
}

/** What a client gives its credentials: its metrics, its `credentials` event and its `error` reports. */
export interface CredentialsOwner {
  readonly metrics?: { credentialOutcome(outcome: CredentialOutcome): void } | undefined;
  emit(event: "credentials", change: CredentialsChange): unknown;
  /** Emits a transient fault as `error`, rate-limited (Client.report). */
  report(error: Error): void;
}

/**
 * The keeper of `connect({ credentials, credentialRefresh })`, telling `owner` of every outcome;
 * undefined without `credentials` (the URL's user and password are used). Throws ConfigError for a
 * bad `credentialRefresh`.
 */
export function credentialKeeper(
  options: { credentials?: Credentials | CredentialsProvider; credentialRefresh?: CredentialRefreshOptions },
  owner: CredentialsOwner,
): CredentialKeeper | undefined {
  if (options.credentials === undefined) return undefined;
  const observe: CredentialObserver = (outcome, error, expiresAt) => {
    owner.metrics?.credentialOutcome(outcome);
    owner.emit("credentials", { outcome, expiresAt, error });
    if (error !== undefined && isReported(error)) owner.report(error);
  };
  return new CredentialKeeper(
    new CredentialSource(options.credentials, options.credentialRefresh, observe),
    observe,
  );
}
