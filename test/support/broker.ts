/**
 * Helpers for integration tests that talk to the main RabbitMQ node (rabbit@localhost, the broker
 * `scripts/broker.sh` makes sure of) and drive it with `rabbitmqctl`.
 *
 * Every helper that runs a CLI command takes an optional `ctl`, so the same helpers work against an
 * extra node from `./extra-node.ts` (pass `node.ctl`).
 *
 * Note: vitest runs up to two test files at once against the same broker. Anything that changes the
 * whole node (memory alarm, closing connections by name) affects the other file too: use unique
 * names, and prefer an extra node for tests that block the whole broker.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants } from "node:fs";

export const AMQP_URL = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/";

/** Runs one CLI command (`args` without the tool name) and resolves with its stdout. */
export type Ctl = (args: string[]) => Promise<string>;

export interface RabbitmqctlOptions {
  /** Kill the command after this long (default 60 s). */
  timeoutMs?: number;
  /** Target node (`-n`); by default the node configured for the local installation. */
  node?: string;
}

export interface CtlOption {
  /** Run commands through this instead of the main node's rabbitmqctl (e.g. an extra node's `ctl`). */
  ctl?: Ctl;
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = "CommandError";
  }
}

/** Runs `file args` and resolves with stdout; rejects with a CommandError carrying stderr. */
export function run(
  file: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<string> {
  const timeout = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        timeout,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
        ...(opts.env ? { env: opts.env } : {}),
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve(stdout);
          return;
        }
        const err = error as NodeJS.ErrnoException & { killed?: boolean; code?: number | string | null };
        const what = `${file} ${args.join(" ")}`;
        const why = err.killed
          ? `timed out after ${timeout} ms`
          : typeof err.code === "number"
            ? `exited with status ${err.code}`
            : `failed: ${err.message}`;
        const detail = (stderr.trim() || stdout.trim()).slice(0, 4000);
        reject(
          new CommandError(`${what} ${why}${detail ? `\n${detail}` : ""}`, err.code ?? null, stdout, stderr),
        );
      },
    );
  });
}

function findRabbitmqctl(): string {
  const fromEnv = process.env["RABBITMQCTL"];
  if (fromEnv) return fromEnv;
  for (const candidate of ["/usr/sbin/rabbitmqctl", "/usr/local/sbin/rabbitmqctl", "/usr/bin/rabbitmqctl"]) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  return "rabbitmqctl";
}

/** Environment for the main node's CLI: nothing inherited that would point it at another node. */
function mainCtlEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("RABBITMQ_") || key.startsWith("ERL_")) continue;
    env[key] = value;
  }
  env["LANG"] ??= "C.UTF-8";
  return env;
}

/**
 * Runs the main node's `rabbitmqctl` (Debian's wrapper, which switches to the rabbitmq user and
 * its Erlang cookie when run as root) and resolves with stdout. Rejects with stderr on failure.
 */
export function rabbitmqctl(args: string[], opts: RabbitmqctlOptions = {}): Promise<string> {
  const full = opts.node ? ["-n", opts.node, ...args] : args;
  return run(findRabbitmqctl(), full, {
    timeoutMs: opts.timeoutMs ?? 60_000,
    env: mainCtlEnv(),
  });
}

const mainCtl: Ctl = (args) => rabbitmqctl(args);

let rabbitmqctlUsable: Promise<boolean> | undefined;

/** Whether `rabbitmqctl` can reach the main node (false e.g. when AMQP_URL points elsewhere). */
export function canUseRabbitmqctl(): Promise<boolean> {
  rabbitmqctlUsable ??= rabbitmqctl(["-q", "ping"], { timeoutMs: 20_000 }).then(
    () => true,
    () => false,
  );
  return rabbitmqctlUsable;
}

let nameCounter = 0;

/** A collision-free name for a queue, exchange, user or vhost: prefix-pid-counter-random. */
export function uniqueName(prefix = "warren"): string {
  nameCounter += 1;
  return `${prefix}-${process.pid}-${nameCounter}-${randomBytes(4).toString("hex")}`;
}

// ---------------------------------------------------------------------------------------------
// Memory alarm

type WatermarkSetting = { relative: number } | { absolute: number | string };

const DEFAULT_WATERMARK = "0.4";

/** Watermark arguments to restore, per ctl, saved by the first setMemoryAlarm(). */
const savedWatermarks = new Map<Ctl, string[]>();

async function readStatus(ctl: Ctl): Promise<Record<string, unknown>> {
  const out = await ctl(["status", "--formatter", "json"]);
  const start = out.indexOf("{");
  if (start < 0) throw new Error(`unexpected output of rabbitmqctl status: ${out.slice(0, 300)}`);
  return JSON.parse(out.slice(start)) as Record<string, unknown>;
}

function watermarkArgs(setting: unknown): string[] {
  const s = setting as Partial<WatermarkSetting> | undefined;
  if (s && typeof s === "object") {
    if ("relative" in s && typeof s.relative === "number" && s.relative > 0) {
      return [String(s.relative)];
    }
    if ("absolute" in s && (typeof s.absolute === "number" || typeof s.absolute === "string")) {
      if (Number(s.absolute) !== 0) return ["absolute", String(s.absolute)];
    }
  }
  // Unknown, or 0 (an alarm left behind by a crashed run): fall back to RabbitMQ's default.
  return [DEFAULT_WATERMARK];
}

function hasMemoryAlarm(status: Record<string, unknown>): boolean {
  const alarms = status["alarms"];
  return (
    Array.isArray(alarms) &&
    alarms.some(
      (a) => typeof a === "object" && a !== null && (a as Record<string, unknown>)["resource"] === "memory",
    )
  );
}

async function waitForAlarm(ctl: Ctl, raised: boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (hasMemoryAlarm(await readStatus(ctl)) === raised) return;
    if (Date.now() > deadline) {
      throw new Error(`memory alarm did not become ${raised ? "raised" : "cleared"} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Raises a memory alarm by setting the high watermark to 0, after saving the current setting.
 * Resolves once the node reports the alarm. Publishing connections get connection.blocked.
 * Always pair with clearMemoryAlarm() in a finally block, or use withMemoryAlarm().
 */
export async function setMemoryAlarm(opts: CtlOption = {}): Promise<void> {
  const ctl = opts.ctl ?? mainCtl;
  if (!savedWatermarks.has(ctl)) {
    const status = await readStatus(ctl);
    savedWatermarks.set(ctl, watermarkArgs(status["vm_memory_high_watermark_setting"]));
  }
  await ctl(["set_vm_memory_high_watermark", "0"]);
  await waitForAlarm(ctl, true, 10_000);
}

/** Restores the watermark saved by setMemoryAlarm() (default 0.4) and waits for the alarm to clear. */
export async function clearMemoryAlarm(opts: CtlOption = {}): Promise<void> {
  const ctl = opts.ctl ?? mainCtl;
  const args = savedWatermarks.get(ctl) ?? [DEFAULT_WATERMARK];
  await ctl(["set_vm_memory_high_watermark", ...args]);
  savedWatermarks.delete(ctl);
  await waitForAlarm(ctl, false, 10_000);
}

/** Runs fn while the memory alarm is raised; the watermark is restored even if fn throws. */
export async function withMemoryAlarm<T>(fn: () => Promise<T> | T, opts: CtlOption = {}): Promise<T> {
  try {
    await setMemoryAlarm(opts);
    return await fn();
  } finally {
    await clearMemoryAlarm(opts);
  }
}

// ---------------------------------------------------------------------------------------------
// Connections

export interface CloseConnectionsOptions extends CtlOption {
  /** Poll this long for a matching connection to appear (default 5000 ms; 0 = look once). */
  waitMs?: number;
}

async function findConnectionPids(ctl: Ctl, name: string): Promise<string[]> {
  // Text output: "<pid>\t[{"connection_name","..."},...]"; strings are printed with JSON escapes.
  const out = await ctl(["list_connections", "-q", "--no-table-headers", "pid", "client_properties"]);
  const needle = `{"connection_name",${JSON.stringify(name)}}`;
  const pids: string[] = [];
  for (const line of out.split("\n")) {
    const tab = line.indexOf("\t");
    if (tab < 0) continue;
    const pid = line.slice(0, tab).trim();
    if (pid.startsWith("<") && line.slice(tab + 1).includes(needle)) pids.push(pid);
  }
  return pids;
}

/**
 * Force-closes every connection whose client property `connection_name` equals `name`; the client
 * gets connection.close with CONNECTION_FORCED (320) and `reason` as text. Resolves with the number
 * of connections closed.
 */
export async function closeConnectionsNamed(
  name: string,
  reason = "closed by test",
  opts: CloseConnectionsOptions = {},
): Promise<number> {
  const ctl = opts.ctl ?? mainCtl;
  const deadline = Date.now() + (opts.waitMs ?? 5000);
  let pids = await findConnectionPids(ctl, name);
  while (pids.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    pids = await findConnectionPids(ctl, name);
  }
  let closed = 0;
  for (const pid of pids) {
    try {
      await ctl(["close_connection", pid, reason]);
      closed += 1;
    } catch {
      // It went away on its own meanwhile.
    }
  }
  return closed;
}

// ---------------------------------------------------------------------------------------------
// Users and vhosts

export interface AddUserOptions extends CtlOption {
  /** Vhost to grant permissions on (default "/"). */
  vhost?: string;
  /** configure, write, read regexes (default full permissions); null = grant none. */
  permissions?: [string, string, string] | null;
  /** User tags, e.g. ["administrator"]. */
  tags?: string[];
}

function ignoreMissing(error: unknown, ...markers: string[]): void {
  const text = error instanceof CommandError ? `${error.stderr}\n${error.stdout}` : String(error);
  if (!markers.some((m) => text.includes(m))) throw error;
}

/** Creates a user (password may be "" for none: certificate login) and grants permissions. */
export async function addUser(user: string, password: string, opts: AddUserOptions = {}): Promise<void> {
  const ctl = opts.ctl ?? mainCtl;
  if (password === "") {
    await ctl(["add_user", user, randomBytes(18).toString("base64url")]);
    await ctl(["clear_password", user]);
  } else {
    await ctl(["add_user", user, password]);
  }
  if (opts.tags && opts.tags.length > 0) await ctl(["set_user_tags", user, ...opts.tags]);
  const permissions = opts.permissions === undefined ? [".*", ".*", ".*"] : opts.permissions;
  if (permissions) await ctl(["set_permissions", "-p", opts.vhost ?? "/", user, ...permissions]);
}

/** Deletes a user; a user that does not exist is not an error. */
export async function deleteUser(user: string, opts: CtlOption = {}): Promise<void> {
  const ctl = opts.ctl ?? mainCtl;
  try {
    await ctl(["delete_user", user]);
  } catch (error) {
    ignoreMissing(error, "no_such_user", "does not exist");
  }
}

/** Creates a vhost and gives `guest` (or `grantTo`) full permissions on it. */
export async function addVhost(
  vhost: string,
  opts: CtlOption & { grantTo?: string | null } = {},
): Promise<void> {
  const ctl = opts.ctl ?? mainCtl;
  await ctl(["add_vhost", vhost]);
  const grantTo = opts.grantTo === undefined ? "guest" : opts.grantTo;
  if (grantTo) await ctl(["set_permissions", "-p", vhost, grantTo, ".*", ".*", ".*"]);
}

/** Deletes a vhost; a vhost that does not exist is not an error. */
export async function deleteVhost(vhost: string, opts: CtlOption = {}): Promise<void> {
  const ctl = opts.ctl ?? mainCtl;
  try {
    await ctl(["delete_vhost", vhost]);
  } catch (error) {
    ignoreMissing(error, "no_such_vhost", "does not exist");
  }
}

/** AMQP_URL with another user, password and/or vhost (percent-encoded as needed). */
export function amqpUrlWith(
  parts: { user?: string; password?: string; vhost?: string },
  base = AMQP_URL,
): string {
  const url = new URL(base);
  if (parts.user !== undefined) url.username = encodeURIComponent(parts.user);
  if (parts.password !== undefined) url.password = encodeURIComponent(parts.password);
  if (parts.vhost !== undefined) url.pathname = `/${encodeURIComponent(parts.vhost)}`;
  return url.toString();
}
