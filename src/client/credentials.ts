/**
 * Where a client's login comes from (`connect({ credentials })`): a fixed pair, or a provider asked
 * before every connection attempt, so a reconnect after an outage logs in with fresh credentials
 * (an OAuth 2.0 token, a rotated password). Without `credentials` the URL's user and password are
 * used, as before; with them, they override the URL's.
 *
 * This file asks the provider (bounded by a timeout) and checks its answer; credential-refresh.ts
 * keeps an open connection's secret fresh. Neither puts a password or token in an error, event or
 * metric: messages name types and fields, never values.
 */
import { AuthenticationError, ConfigError, CredentialsError } from "../errors.js";

/** A user name and password (or token), and optionally when they expire. */
export interface Credentials {
  /** The user name; may be empty when the password is a token that names the user (OAuth 2.0). */
  username: string;
  /** The password, or a token (e.g. an OAuth 2.0 JWT access token). */
  password: string;
  /**
   * When they expire: a Date, or ms since the epoch. Set, the client refreshes them on the open
   * connection before then (connection.update-secret). Read from a provider only.
   */
  expiresAt?: Date | number | undefined;
}

/** Asked before every connection attempt and before every refresh; may be async. */
export type CredentialsProvider = () => Credentials | Promise<Credentials>;

/** When and how credentials that expire are refreshed (`connect({ credentialRefresh })`). */
export interface CredentialRefreshOptions {
  /**
   * Refresh this fraction of their lifetime before they expire (default 0.1), but at least
   * `minMarginMs` before, and never earlier than half-way through their lifetime.
   */
  marginRatio?: number;
  /** The smallest margin, in ms (default 5000). */
  minMarginMs?: number;
  /** How long the provider may take, and the broker's update-secret-ok, in ms (default 30000). */
  timeoutMs?: number;
  /** A failed refresh is retried after this long, doubling per failure (default 1000 ms)… */
  retryInitialMs?: number;
  /** …up to this (default 30000 ms). */
  retryMaxMs?: number;
}

/** The resolved refresh options. */
export type RefreshPolicy = Required<CredentialRefreshOptions>;

export const DEFAULT_REFRESH: RefreshPolicy = {
  marginRatio: 0.1,
  minMarginMs: 5000,
  timeoutMs: 30_000,
  retryInitialMs: 1000,
  retryMaxMs: 30_000,
};

/** Credentials for one login: checked, with their expiry (ms since the epoch) and when they were had. */
export interface LoginCredentials {
  username: string;
  password: string;
  /** Undefined: they do not expire (nothing to refresh). */
  expiresAt: number | undefined;
  /** When the provider answered (ms since the epoch). */
  obtainedAt: number;
}

/** What the source tells its owner: each failed ask (metrics, events). */
export type FetchOutcome = "provider_error" | "malformed";

/** The credentials of `connect({ credentials })`, asked for before each login and each refresh. */
export class CredentialSource {
  readonly policy: RefreshPolicy;
  private readonly provider: CredentialsProvider | undefined;
  private readonly fixed: Credentials | undefined;

  constructor(
    option: Credentials | CredentialsProvider,
    refresh: CredentialRefreshOptions | undefined,
    private readonly observe: (outcome: FetchOutcome, error?: CredentialsError) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.policy = refreshPolicy(refresh);
    if (typeof option === "function") this.provider = option;
    else this.fixed = option;
  }

  /** True for a provider (asked each time), false for a fixed pair. */
  get isProvider(): boolean {
    return this.provider !== undefined;
  }

  /**
   * Credentials for a login or a refresh: the provider's answer within `timeoutMs`, checked.
   * Rejects with CredentialsError: "provider" (it threw, rejected, or timed out; recoverable) or
   * "malformed" (not recoverable).
   */
  async fetch(): Promise<LoginCredentials> {
    let answer: unknown;
    try {
      answer = this.provider ? await withTimeout(this.provider, this.policy.timeoutMs) : this.fixed;
    } catch (e) {
      const error =
        e instanceof CredentialsError
          ? e
          : new CredentialsError(
              `the credentials provider failed: ${describe(e)}; the client asks it again with backoff`,
              { reason: "provider", cause: e },
            );
      this.observe("provider_error", error);
      throw error;
    }
    try {
      return checked(answer, this.now(), this.provider !== undefined);
    } catch (e) {
      this.observe("malformed", e as CredentialsError);
      throw e;
    }
  }

  /**
   * Opens a connection with fresh credentials. With a provider, a refused login (an expired or
   * just-rotated token) is tried once more with new credentials from it; refused again, the
   * AuthenticationError stands (permanent).
   */
  async open<C>(
    open: (creds: LoginCredentials) => Promise<C>,
  ): Promise<{ conn: C; creds: LoginCredentials }> {
    const creds = await this.fetch();
    try {
      return { conn: await open(creds), creds };
    } catch (e) {
      if (!(e instanceof AuthenticationError) || !this.provider) throw e;
    }
    const again = await this.fetch();
    return { conn: await open(again), creds: again };
  }
}

/** The refresh options with their defaults; a bad value is a ConfigError. */
export function refreshPolicy(o: CredentialRefreshOptions | undefined): RefreshPolicy {
  const p = { ...DEFAULT_REFRESH, ...o };
  const bad = (Object.keys(DEFAULT_REFRESH) as (keyof RefreshPolicy)[]).find(
    (k) => typeof p[k] !== "number" || !Number.isFinite(p[k]) || p[k] < 0,
  );
  if (bad !== undefined || p.marginRatio >= 1) {
    throw new ConfigError(
      `credentialRefresh.${bad ?? "marginRatio"} must be a finite number${bad === undefined ? " below 1" : ""}, at least 0`,
    );
  }
  return p;
}

/** The provider's answer, checked; the message names what is wrong, never a value. */
export function checked(answer: unknown, now: number, fromProvider: boolean): LoginCredentials {
  const what = fromProvider ? "the credentials provider's answer" : "credentials";
  const fail = (why: string): never => {
    throw new CredentialsError(
      `${what} ${why}: expected { username: string, password: string, expiresAt? }`,
      {
        reason: "malformed",
      },
    );
  };
  if (typeof answer !== "object" || answer === null) return fail(`is ${kindOf(answer)}`);
  const a = answer as Record<string, unknown>;
  if (typeof a["username"] !== "string") fail(`has a username of type ${kindOf(a["username"])}`);
  if (typeof a["password"] !== "string" || a["password"] === "")
    fail(a["password"] === "" ? "has an empty password" : `has a password of type ${kindOf(a["password"])}`);
  const e = a["expiresAt"];
  let expiresAt: number | undefined;
  if (fromProvider && e !== undefined && e !== null) {
    expiresAt = e instanceof Date ? e.getTime() : typeof e === "number" ? e : Number.NaN;
    if (!Number.isFinite(expiresAt))
      fail(`has an expiresAt that is neither a valid Date nor ms since the epoch`);
    // Seconds since the epoch (a JWT's `exp`) would read as 1970: say so rather than refresh at once for ever.
    if ((expiresAt as number) < 1e11) fail(`has an expiresAt in seconds, not ms since the epoch`);
  }
  return { username: a["username"] as string, password: a["password"] as string, expiresAt, obtainedAt: now };
}

function withTimeout<T>(fn: () => T | Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new CredentialsError(
            `the credentials provider did not answer within ${ms} ms; the client asks it again`,
            {
              reason: "provider",
            },
          ),
        ),
      ms,
    );
    Promise.resolve()
      .then(fn)
      .then(resolve, reject)
      .finally(() => clearTimeout(timer));
  });
}

/** An error's name and message for ours (the provider's own message is its business: no values of ours in it). */
function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : `it threw ${kindOf(e)}`;
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : typeof v;
}
