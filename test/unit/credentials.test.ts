/**
 * Credentials of connect({ credentials }): the provider's answer checked, a refused login tried once
 * more, and the refresh of expiring credentials on an open connection (scheduling, retries, the
 * deadline, a refused secret), driven by fake timers and a fake connection.
 */
import { inspect } from "node:util";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type CredentialObserver,
  type CredentialOutcome,
  type RefreshTimers,
  refreshPlan,
  retryDelay,
  SecretRefresher,
} from "../../src/client/credential-refresh.js";
import {
  CredentialSource,
  checked,
  DEFAULT_REFRESH,
  type LoginCredentials,
  refreshPolicy,
} from "../../src/client/credentials.js";
import {
  AuthenticationError,
  ConfigError,
  ConnectionClosedByBroker,
  CredentialsError,
  SocketError,
} from "../../src/errors.js";
import { isReported, isTransient } from "../../src/faults.js";
import { FakeSecretTarget } from "./fakes/fake-secret-target.js";

const T0 = Date.UTC(2026, 0, 1);
const SECRET = "s3cret-token-value";

/** Everything an error shows a log. */
function shown(e: unknown): string {
  const err = e as Error;
  return [err.message, String(err), err.stack ?? "", JSON.stringify(err), inspect(err, { depth: 10 })].join(
    "\n",
  );
}

const login = (expiresIn: number | undefined, obtainedAt = T0): LoginCredentials => ({
  username: "",
  password: SECRET,
  expiresAt: expiresIn === undefined ? undefined : obtainedAt + expiresIn,
  obtainedAt,
});

describe("refreshPlan: when to refresh, and when to give the connection up", () => {
  const p = DEFAULT_REFRESH;
  it("a 10 s token: 5 s before it expires (the 5 s minimum, at most half its life); deadline 1 s before", () => {
    expect(refreshPlan(login(10_000), p)).toEqual({ refreshAt: T0 + 5000, deadline: T0 + 9000 });
  });
  it("a 1 h token: 10% of its life (6 min) before", () => {
    expect(refreshPlan(login(3_600_000), p)).toEqual({ refreshAt: T0 + 3_240_000, deadline: T0 + 3_599_000 });
  });
  it("a 30 s token: the 5 s minimum margin wins over 10%", () => {
    expect(refreshPlan(login(30_000), p)?.refreshAt).toBe(T0 + 25_000);
  });
  it("a 2 s token: half-way, and a guard of a tenth of its life", () => {
    expect(refreshPlan(login(2000), p)).toEqual({ refreshAt: T0 + 1000, deadline: T0 + 1800 });
  });
  it("the margin is configurable", () => {
    const policy = refreshPolicy({ marginRatio: 0.5, minMarginMs: 0 });
    expect(refreshPlan(login(60_000), policy)?.refreshAt).toBe(T0 + 30_000);
  });
  it("credentials without expiresAt are never refreshed", () => {
    expect(refreshPlan(login(undefined), p)).toBeUndefined();
  });
  it("a bad refresh option is a ConfigError", () => {
    expect(() => refreshPolicy({ marginRatio: 1 })).toThrow(ConfigError);
    expect(() => refreshPolicy({ timeoutMs: -1 })).toThrow(ConfigError);
    expect(() => refreshPolicy({ minMarginMs: Number.NaN })).toThrow(/minMarginMs/);
  });
});

describe("retryDelay", () => {
  it("doubles from retryInitialMs up to retryMaxMs, jittered in the upper half", () => {
    const p = DEFAULT_REFRESH;
    expect([0, 1, 2, 3].map((n) => retryDelay(n, p, () => 1))).toEqual([1000, 2000, 4000, 8000]);
    expect(retryDelay(10, p, () => 1)).toBe(30_000);
    expect(retryDelay(0, p, () => 0)).toBe(500);
    expect(retryDelay(1000, p, () => 0)).toBe(15_000);
  });
});

describe("checked: the provider's answer", () => {
  it("takes { username, password, expiresAt } with a Date or ms since the epoch", () => {
    const at = new Date(T0 + 60_000);
    expect(checked({ username: "u", password: "p", expiresAt: at }, T0, true)).toEqual({
      username: "u",
      password: "p",
      expiresAt: T0 + 60_000,
      obtainedAt: T0,
    });
    expect(checked({ username: "", password: "p", expiresAt: T0 + 1 }, T0, true).expiresAt).toBe(T0 + 1);
    expect(checked({ username: "", password: "p" }, T0, true).expiresAt).toBeUndefined();
  });

  it("a fixed pair never expires (its expiresAt is not read)", () => {
    expect(checked({ username: "u", password: "p", expiresAt: T0 }, T0, false).expiresAt).toBeUndefined();
  });

  const bad: [string, unknown, RegExp][] = [
    ["nothing", undefined, /is undefined/],
    ["a string", SECRET, /is string/],
    ["no password", { username: "u" }, /password of type undefined/],
    ["an empty password", { username: "u", password: "" }, /empty password/],
    ["a numeric username", { username: 1, password: SECRET }, /username of type number/],
    ["an invalid Date", { username: "", password: SECRET, expiresAt: new Date("x") }, /expiresAt/],
    ["a string expiresAt", { username: "", password: SECRET, expiresAt: "soon" }, /expiresAt/],
    ["a JWT exp in seconds", { username: "", password: SECRET, expiresAt: 1_800_000_000 }, /in seconds/],
  ];
  for (const [name, answer, message] of bad) {
    it(`${name}: CredentialsError "malformed", permanent, without the secret`, () => {
      let error: unknown;
      try {
        checked(answer, T0, true);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(CredentialsError);
      const e = error as CredentialsError;
      expect(e.reason).toBe("malformed");
      expect(e.code).toBe("CREDENTIALS_ERROR");
      expect(e.recoverable).toBe(false);
      expect(e.message).toMatch(message);
      expect(shown(e)).not.toContain(SECRET);
    });
  }
});

describe("CredentialSource", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("asks the provider each time; a throwing one is CredentialsError 'provider': transient, reported, observed", async () => {
    const outcomes: [string, Error | undefined][] = [];
    let calls = 0;
    const source = new CredentialSource(
      () => {
        calls++;
        if (calls === 2) throw new Error("token endpoint down");
        return { username: "u", password: `${SECRET}-${calls}` };
      },
      undefined,
      (o, e) => outcomes.push([o, e]),
    );
    expect((await source.fetch()).password).toBe(`${SECRET}-1`);
    const error = await source.fetch().catch((e: unknown) => e);
    expect((await source.fetch()).password).toBe(`${SECRET}-3`);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as CredentialsError).reason).toBe("provider");
    expect((error as Error).message).toContain("token endpoint down");
    expect(isTransient(error)).toBe(true);
    expect(isReported(error)).toBe(true);
    expect(outcomes).toEqual([["provider_error", error]]);
  });

  it("a provider that does not answer within timeoutMs is CredentialsError 'provider'", async () => {
    vi.useFakeTimers();
    const source = new CredentialSource(() => new Promise(() => undefined), { timeoutMs: 2000 });
    const p = source.fetch().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2000);
    const error = (await p) as CredentialsError;
    expect(error).toBeInstanceOf(CredentialsError);
    expect(error.reason).toBe("provider");
    expect(error.message).toMatch(/did not answer within 2000 ms/);
  });

  it("a malformed answer is observed as malformed and thrown", async () => {
    const outcomes: string[] = [];
    const source = new CredentialSource(
      async () => ({ username: "u" }) as never,
      undefined,
      (o) => outcomes.push(o),
    );
    const error = await source.fetch().catch((e: unknown) => e);
    expect((error as CredentialsError).recoverable).toBe(false);
    expect(outcomes).toEqual(["malformed"]);
  });

  it("open(): a refused login is tried once more with new credentials from the provider", async () => {
    let calls = 0;
    const source = new CredentialSource(() => ({ username: "", password: `token-${++calls}` }), undefined);
    const tried: string[] = [];
    const { conn, creds } = await source.open(async (c) => {
      tried.push(c.password);
      if (c.password === "token-1") throw new AuthenticationError("refused");
      return { id: c.password };
    });
    expect(tried).toEqual(["token-1", "token-2"]);
    expect(conn).toEqual({ id: "token-2" });
    expect(creds.password).toBe("token-2");
  });

  it("open(): refused twice, the AuthenticationError stands (permanent)", async () => {
    let calls = 0;
    const source = new CredentialSource(() => ({ username: "", password: `token-${++calls}` }), undefined);
    const error = await source
      .open(async () => {
        throw new AuthenticationError("refused");
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(calls).toBe(2);
  });

  it("open(): other faults are not retried here (the supervisor's backoff is), nor is a fixed pair", async () => {
    let calls = 0;
    const provider = new CredentialSource(() => ({ username: "", password: `token-${++calls}` }), undefined);
    await expect(
      provider.open(async () => {
        throw new SocketError("refused");
      }),
    ).rejects.toBeInstanceOf(SocketError);
    expect(calls).toBe(1);
    const fixed = new CredentialSource({ username: "u", password: "p" }, undefined);
    let opens = 0;
    await expect(
      fixed.open(async () => {
        opens++;
        throw new AuthenticationError("refused");
      }),
    ).rejects.toBeInstanceOf(AuthenticationError);
    expect(opens).toBe(1);
  });
});

describe("SecretRefresher", () => {
  let target: FakeSecretTarget;
  let outcomes: { outcome: CredentialOutcome; error: CredentialsError | undefined; expiresAt?: number }[];
  let lost: CredentialsError[];
  let provider: () => Promise<LoginCredentials>;
  let calls: number;
  const timers: RefreshTimers = {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    random: () => 1,
  };
  const observe: CredentialObserver = (outcome, error, expiresAt) =>
    outcomes.push({ outcome, error, ...(expiresAt !== undefined ? { expiresAt } : {}) });

  /** A provider of 60 s tokens, numbered. */
  const tokens = async (): Promise<LoginCredentials> => {
    calls++;
    return {
      username: "",
      password: `token-${calls}`,
      expiresAt: Date.now() + 60_000,
      obtainedAt: Date.now(),
    };
  };

  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
    target = new FakeSecretTarget();
    outcomes = [];
    lost = [];
    calls = 0;
    provider = tokens;
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function start(first = login(60_000), policy = DEFAULT_REFRESH): SecretRefresher {
    return new SecretRefresher(
      target,
      first,
      policy,
      { fetch: () => provider(), observe, lose: (e) => lost.push(e) },
      timers,
    );
  }

  it("refreshes 6 s before a 60 s token expires, sends the new token, and schedules the next from it", async () => {
    const r = start();
    await vi.advanceTimersByTimeAsync(53_999);
    expect(calls).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(target.secrets).toEqual(["token-1"]);
    expect(outcomes).toEqual([{ outcome: "ok", error: undefined, expiresAt: T0 + 54_000 + 60_000 }]);
    expect(r.expiresAt).toBe(T0 + 114_000);
    await vi.advanceTimersByTimeAsync(54_000);
    expect(target.secrets).toEqual(["token-1", "token-2"]);
    // Four lifetimes: a refresh each, no loss.
    await vi.advanceTimersByTimeAsync(2 * 54_000);
    expect(target.secrets).toHaveLength(4);
    expect(lost).toEqual([]);
    expect(target.listening).toBe(0);
    r.stop();
  });

  it("a throwing provider: reported, retried with a doubling backoff, ok once it answers; the connection is kept", async () => {
    let failures = 2;
    provider = async () => {
      if (failures-- > 0) {
        calls++;
        throw new CredentialsError("the credentials provider failed: down", { reason: "provider" });
      }
      return tokens();
    };
    const r = start();
    await vi.advanceTimersByTimeAsync(54_000); // first try fails
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1000); // retry after 1 s
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1999);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1); // then 2 s: it answers, before the deadline (59 s)
    expect(calls).toBe(3);
    expect(target.secrets).toEqual(["token-3"]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok"]); // provider_error is observed by the source
    expect(lost).toEqual([]);
    r.stop();
  });

  it("no refresh before the deadline: the connection is given up with CredentialsError 'expired' (transient), once", async () => {
    provider = async () => {
      calls++;
      throw new CredentialsError("the credentials provider failed: down", { reason: "provider" });
    };
    const r = start();
    await vi.advanceTimersByTimeAsync(58_999);
    expect(lost).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(lost).toHaveLength(1);
    const error = lost[0] as CredentialsError;
    expect(error.reason).toBe("expired");
    expect(error.recoverable).toBe(true);
    expect(isReported(error)).toBe(true);
    expect(r.explain(undefined)).toBe(error);
    const before = calls;
    await vi.advanceTimersByTimeAsync(120_000);
    expect(calls).toBe(before);
    expect(lost).toHaveLength(1);
  });

  it("no update-secret-ok within timeoutMs: outcome timeout, retried; the listener is removed", async () => {
    target.answers = false;
    const r = start(login(60_000), refreshPolicy({ timeoutMs: 500 }));
    await vi.advanceTimersByTimeAsync(54_000);
    expect(target.secrets).toEqual(["token-1"]);
    await vi.advanceTimersByTimeAsync(500);
    expect(outcomes.map((o) => o.outcome)).toEqual(["timeout"]);
    expect(outcomes[0]?.error).toBeInstanceOf(CredentialsError);
    expect(target.listening).toBe(0);
    target.answers = true;
    await vi.advanceTimersByTimeAsync(1000);
    expect(target.secrets).toEqual(["token-1", "token-2"]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["timeout", "ok"]);
    r.stop();
  });

  it("a malformed answer at a refresh gives the connection up with the permanent error", async () => {
    provider = async () => {
      throw new CredentialsError("malformed", { reason: "malformed" });
    };
    start();
    await vi.advanceTimersByTimeAsync(54_000);
    expect(lost).toHaveLength(1);
    expect(lost[0]?.recoverable).toBe(false);
  });

  it("explain(): a secret refused by the broker is CredentialsError 'refused' (transient), observed; other closes pass", () => {
    const r = start();
    const refusedClose = new ConnectionClosedByBroker({
      replyCode: 530,
      replyText: "NOT_ALLOWED - New secret was refused by one of the backends",
      classId: 10,
      methodId: 70,
      methodName: "connection.update-secret",
    });
    expect(refusedClose.recoverable).toBe(false);
    const explained = r.explain(refusedClose) as CredentialsError;
    expect(explained).toBeInstanceOf(CredentialsError);
    expect(explained.reason).toBe("refused");
    expect(explained.recoverable).toBe(true);
    expect(explained.cause).toBe(refusedClose);
    expect(outcomes.map((o) => o.outcome)).toEqual(["refused"]);
    const forced = new ConnectionClosedByBroker({ replyCode: 320, replyText: "x", classId: 0, methodId: 0 });
    expect(r.explain(forced)).toBe(forced);
    expect(r.explain(undefined)).toBeUndefined();
    r.stop();
  });

  it("stop() ends everything: no provider call, no loss, no listener", async () => {
    target.answers = false;
    const r = start();
    await vi.advanceTimersByTimeAsync(54_000);
    expect(target.listening).toBe(1);
    r.stop();
    expect(target.listening).toBe(0);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(calls).toBe(1);
    expect(lost).toEqual([]);
  });

  it("credentials without expiresAt: nothing is scheduled", async () => {
    start(login(undefined));
    await vi.advanceTimersByTimeAsync(24 * 3_600_000);
    expect(calls).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
