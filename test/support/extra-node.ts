/**
 * Extra, private RabbitMQ nodes for tests that need their own broker (TLS, auth mechanisms, node
 * failures), following /work/shared/design/RABBITMQ-LOCAL.md:
 *
 * - the real scripts in /usr/lib/rabbitmq/bin run as root (Debian's /usr/sbin wrappers would switch
 *   to the rabbitmq user and its cookie), with HOME set to a directory of our own holding a fresh
 *   .erlang.cookie (mode 400), so nothing here can talk to the main node rabbit@localhost;
 * - RABBITMQ_CONF_ENV_FILE points at an empty file (the system one pins NODENAME), and inherited
 *   RABBITMQ_* / ERL_* variables are dropped;
 * - node name, AMQP port, distribution port, CLI distribution port range, mnesia/log/pid/config/
 *   enabled-plugins files are all our own, under one temporary directory;
 * - the node's beam.smp carries a marker variable in its environment, and is only ever killed after
 *   checking that marker (other nodes run the same binary).
 *
 * Nodes are stopped by stop(); if the test process exits without that, an exit hook kills them,
 * and a small watchdog process kills them within a second or so when the test process is killed.
 *
 * Needs root and Debian's rabbitmq-server package. Measured here: start about 5-8 s, stop about 2 s.
 */

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Ctl, run } from "./broker.js";
import { CLIENT_CN, makeCerts, type TestCerts } from "./certs.js";

export const RABBITMQ_BIN = "/usr/lib/rabbitmq/bin";
const RABBITMQ_LIB = "/usr/lib/rabbitmq/lib";
const MARKER_KEY = "WARREN_EXTRA_NODE";

export type RabbitTool =
  | "rabbitmqctl"
  | "rabbitmq-plugins"
  | "rabbitmq-queues"
  | "rabbitmq-diagnostics"
  | "rabbitmq-upgrade";

export interface ExtraNodeOptions {
  /** Base name: "warren-tls" gives node warren-tls-<pid>@localhost. A name with "@" is used as is. */
  name: string;
  /** Plain AMQP listener on 127.0.0.1. */
  amqpPort: number;
  /** Erlang distribution port (not 25672, which the main node uses). */
  distPort: number;
  /** rabbitmq.conf text. */
  config?: string;
  /** advanced.config text (Erlang terms), default "[].". */
  advancedConfig?: string;
  /** Plugins to enable, e.g. ["rabbitmq_auth_mechanism_ssl"]. */
  plugins?: string[];
  /** Port range for this node's CLI tools; default [distPort + 10000, distPort + 10009]. */
  ctlDistPorts?: [number, number];
  /** Directory to use (created if missing); it is removed by stop(). Default: a new temp dir. */
  dir?: string;
  /** How long to wait for the node to boot (default 60 s). */
  startTimeoutMs?: number;
}

export interface ExtraNode {
  nodeName: string;
  amqpPort: number;
  distPort: number;
  /** amqp://guest:guest@127.0.0.1:<amqpPort>/ */
  url: string;
  /** The node's private directory (removed by stop()). */
  dir: string;
  /** Main log file of the node. */
  logFile: string;
  /** OS pid of the node's beam.smp. */
  pid: number;
  /** How long startExtraNode() took, in ms. */
  startMs: number;
  /** rabbitmqctl -n <node> ...args; resolves with stdout, rejects with stderr. */
  ctl(args: string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** Any CLI tool against this node (rabbitmq-queues, rabbitmq-diagnostics, ...). */
  cli(tool: RabbitTool, args: string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** Hard failure: SIGKILL this node's beam.smp (the directory stays until stop()). */
  kill(): Promise<void>;
  /** Stops the node (rabbitmqctl stop, SIGKILL as fallback) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface LiveNode {
  nodeName: string;
  dir: string;
  pidFile: string;
  marker: string;
  watchdogPid: number | undefined;
}

const live = new Set<LiveNode>();
let exitHookInstalled = false;
const nameCounts = new Map<string, number>();

/** Whether this machine can run extra nodes (root and Debian's rabbitmq-server). */
export function extraNodesSupported(): boolean {
  return process.getuid?.() === 0 && existsSync(join(RABBITMQ_BIN, "rabbitmq-server"));
}

/** Whether a RabbitMQ plugin ships with the installed server, e.g. "rabbitmq_auth_mechanism_ssl". */
export function pluginAvailable(plugin: string): boolean {
  try {
    for (const release of readdirSync(RABBITMQ_LIB)) {
      const dir = join(RABBITMQ_LIB, release, "plugins");
      if (!existsSync(dir)) continue;
      if (readdirSync(dir).some((f) => f === plugin || f.startsWith(`${plugin}-`))) return true;
    }
  } catch {
    // not installed
  }
  return false;
}

/** True when nothing listens on 127.0.0.1:port and we may bind it. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/** True when a TCP connection to host:port succeeds within timeoutMs. */
export function tcpAnswers(port: number, host = "127.0.0.1", timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

const claimedPorts = new Set<number>();

/**
 * `count` distinct free ports in 20000-32767, below Linux's ephemeral range (so outgoing
 * connections do not take them) and away from the main node's ports 25672 and 35672-35682.
 */
export async function findFreePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count; attempt += 1) {
    if (attempt > 2000) throw new Error("no free ports found in 20000-32767");
    const port = 20000 + Math.floor(Math.random() * 12768);
    if (port >= 25600 && port <= 25700) continue;
    if (claimedPorts.has(port) || ports.includes(port)) continue;
    if (await isPortFree(port)) ports.push(port);
  }
  for (const p of ports) claimedPorts.add(p);
  return ports;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie is as good as dead.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** True when pid is a beam.smp whose environment holds our marker. */
function isOurBeam(pid: number, marker: string): boolean {
  try {
    if (!readlinkSync(`/proc/${pid}/exe`).endsWith("/beam.smp")) return false;
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(marker);
  } catch {
    return false;
  }
}

function readPidFile(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidFile, "utf8").trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The beam.smp processes carrying marker: from the pid file, or by scanning /proc. */
function ourBeams(node: Pick<LiveNode, "pidFile" | "marker">): number[] {
  const fromFile = readPidFile(node.pidFile);
  if (fromFile !== undefined && isOurBeam(fromFile, node.marker)) return [fromFile];
  const found: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && isOurBeam(pid, node.marker)) found.push(pid);
  }
  return found;
}

function killBeams(node: Pick<LiveNode, "pidFile" | "marker">): number[] {
  const pids = ourBeams(node);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return pids;
}

function killWatchdog(node: LiveNode): void {
  if (node.watchdogPid === undefined) return;
  try {
    process.kill(-node.watchdogPid, "SIGKILL");
  } catch {
    // already gone
  }
  node.watchdogPid = undefined;
}

function cleanupSync(node: LiveNode): void {
  killBeams(node);
  killWatchdog(node);
  try {
    rmSync(node.dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
  live.delete(node);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const node of [...live]) cleanupSync(node);
  });
}

// Runs detached from the test process; when that process is gone, kills the node's beam.smp
// (only if it carries the marker) and removes the directory.
const WATCHDOG = `
owner="$1"; pidfile="$2"; marker="$3"; dir="$4"
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
pids=""
[ -f "$pidfile" ] && pids=$(cat "$pidfile" 2>/dev/null)
pids="$pids $(grep -lzxF -- "$marker" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)"
for p in $pids; do
  case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
    */beam.smp) grep -qzxF -- "$marker" "/proc/$p/environ" 2>/dev/null && kill -9 "$p" ;;
  esac
done
rm -rf -- "$dir"
`;

function startWatchdog(node: LiveNode, env: NodeJS.ProcessEnv): void {
  const child = spawn(
    "/bin/sh",
    ["-c", WATCHDOG, "warren-node-watchdog", String(process.pid), node.pidFile, node.marker, node.dir],
    {
      detached: true,
      stdio: "ignore",
      env,
    },
  );
  child.on("error", () => {});
  child.unref();
  node.watchdogPid = child.pid;
}

/**
 * This process's environment without RabbitMQ's and Erlang's variables (and `markerKey`, the
 * variable that marks the nodes' processes), for starting private nodes and their helpers.
 */
export function cleanEnv(markerKey = MARKER_KEY): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("RABBITMQ_") || key.startsWith("ERL_") || key === "NOTIFY_SOCKET" || key === markerKey)
      continue;
    env[key] = value;
  }
  env["LANG"] ??= "C.UTF-8";
  const path = env["PATH"] ?? "";
  if (!path.split(":").includes("/usr/bin")) env["PATH"] = `${path ? `${path}:` : ""}/usr/bin:/bin`;
  return env;
}

function cookie(): string {
  const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  return Array.from(randomBytes(20), (b) => letters[b % 26]).join("");
}

async function logTail(file: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function nodeNameFor(name: string): string {
  if (name.includes("@")) return name;
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`invalid node base name: ${name}`);
  const n = nameCounts.get(name) ?? 0;
  nameCounts.set(name, n + 1);
  return `${name}-${process.pid}${n > 0 ? `-${n}` : ""}@localhost`;
}

/** Starts a private RabbitMQ node and resolves once it has booted and answers on amqpPort. */
export async function startExtraNode(opts: ExtraNodeOptions): Promise<ExtraNode> {
  const started = performance.now();
  if (!extraNodesSupported()) {
    throw new Error(`extra RabbitMQ nodes need root and ${RABBITMQ_BIN}/rabbitmq-server`);
  }
  for (const plugin of opts.plugins ?? []) {
    if (!/^[a-z][a-z0-9_]*$/.test(plugin)) throw new Error(`invalid plugin name: ${plugin}`);
  }
  const nodeName = nodeNameFor(opts.name);
  const { amqpPort, distPort } = opts;
  const [ctlMin, ctlMax] =
    opts.ctlDistPorts ??
    (distPort + 10009 <= 65535 ? [distPort + 10000, distPort + 10009] : [distPort - 10009, distPort - 10000]);
  for (const [what, port] of [
    ["AMQP", amqpPort],
    ["distribution", distPort],
  ] as const) {
    if (!(await isPortFree(port))) throw new Error(`${nodeName}: ${what} port ${port} is already in use`);
  }

  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "warren-node-")));
  await mkdir(dir, { recursive: true });
  const home = join(dir, "home");
  const paths = {
    home,
    cookie: join(home, ".erlang.cookie"),
    confEnv: join(dir, "rabbitmq-env.conf"),
    config: join(dir, "rabbitmq.conf"),
    confD: join(dir, "conf.d"),
    advanced: join(dir, "advanced.config"),
    plugins: join(dir, "enabled_plugins"),
    mnesia: join(dir, "mnesia"),
    log: join(dir, "log"),
    pidFile: join(dir, "node.pid"),
  };
  await Promise.all([mkdir(home), mkdir(paths.confD), mkdir(paths.mnesia), mkdir(paths.log)]);
  await writeFile(paths.cookie, cookie(), { mode: 0o400 });
  await chmod(paths.cookie, 0o400);
  await writeFile(paths.confEnv, "");
  await writeFile(paths.config, opts.config ?? "");
  await writeFile(paths.advanced, opts.advancedConfig ?? "[].");
  await writeFile(paths.plugins, `[${(opts.plugins ?? []).join(",")}].\n`);

  const ctlEnv: NodeJS.ProcessEnv = {
    ...cleanEnv(),
    HOME: home,
    RABBITMQ_CONF_ENV_FILE: paths.confEnv,
    RABBITMQ_CTL_DIST_PORT_MIN: String(ctlMin),
    RABBITMQ_CTL_DIST_PORT_MAX: String(ctlMax),
    RABBITMQ_ENABLED_PLUGINS_FILE: paths.plugins,
    RABBITMQ_MNESIA_BASE: paths.mnesia,
    RABBITMQ_LOG_BASE: paths.log,
    ERL_EPMD_ADDRESS: "127.0.0.1",
  };
  const marker = `${MARKER_KEY}=${nodeName}:${dir}`;
  const serverEnv: NodeJS.ProcessEnv = {
    ...ctlEnv,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_PID_FILE: paths.pidFile,
    RABBITMQ_CONFIG_FILE: paths.config,
    RABBITMQ_CONFIG_FILES: paths.confD,
    RABBITMQ_ADVANCED_CONFIG_FILE: paths.advanced,
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
    ERL_CRASH_DUMP: join(dir, "erl_crash.dump"),
    [MARKER_KEY]: `${nodeName}:${dir}`,
  };
  const logFile = join(paths.log, `${nodeName}.log`);

  const node: LiveNode = { nodeName, dir, pidFile: paths.pidFile, marker, watchdogPid: undefined };
  live.add(node);
  installExitHook();
  startWatchdog(node, cleanEnv());

  const cli = (tool: RabbitTool, args: string[], o: { timeoutMs?: number } = {}) =>
    run(join(RABBITMQ_BIN, tool), ["-n", nodeName, ...args], {
      env: ctlEnv,
      cwd: dir,
      timeoutMs: o.timeoutMs ?? 60_000,
    });
  const ctl = (args: string[], o: { timeoutMs?: number } = {}) => cli("rabbitmqctl", args, o);

  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const startupLog = join(dir, "startup.log");
  const fail = async (why: string): Promise<never> => {
    const [tail, startup] = await Promise.all([logTail(logFile), logTail(startupLog, 40)]);
    cleanupSync(node);
    throw new Error(`${nodeName}: ${why}\n--- ${startupLog}\n${startup}\n--- ${logFile}\n${tail}`);
  };

  // Run in the foreground (not -detached) in a session of its own, so that boot errors such as a
  // bad rabbitmq.conf land in startup.log and an early exit is noticed at once.
  let exited: string | undefined;
  const out = openSync(startupLog, "a");
  try {
    const server = spawn(join(RABBITMQ_BIN, "rabbitmq-server"), [], {
      detached: true,
      stdio: ["ignore", out, out],
      env: serverEnv,
      cwd: dir,
    });
    server.on("error", (error) => {
      exited = `could not run rabbitmq-server: ${error.message}`;
    });
    server.on("exit", (code, signal) => {
      exited = `rabbitmq-server exited (${signal ?? `status ${code}`})`;
    });
    server.unref();
  } finally {
    closeSync(out);
  }

  // Wait for the AMQP port; give up early if the node has died.
  for (;;) {
    if (await tcpAnswers(amqpPort, "127.0.0.1", 500)) break;
    if (exited !== undefined) await fail(`${exited} during boot`);
    if (Date.now() > deadline) await fail(`did not open port ${amqpPort} within ${timeoutMs} ms`);
    await sleep(200);
  }
  try {
    const left = Math.max(5, Math.ceil((deadline - Date.now()) / 1000));
    await ctl(["await_startup", "--timeout", String(left)], { timeoutMs: (left + 10) * 1000 });
  } catch (error) {
    await fail(`await_startup failed: ${(error as Error).message}`);
  }
  let pid = readPidFile(paths.pidFile);
  for (let i = 0; pid === undefined && i < 20; i += 1) {
    await sleep(100);
    pid = readPidFile(paths.pidFile) ?? ourBeams(node)[0];
  }
  if (pid === undefined) await fail("no pid file was written");

  let stopping: Promise<void> | undefined;
  const waitDead = async (ms: number): Promise<boolean> => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (ourBeams(node).every((p) => !alive(p))) return true;
      await sleep(100);
    }
    return ourBeams(node).every((p) => !alive(p));
  };

  return {
    nodeName,
    amqpPort,
    distPort,
    url: `amqp://guest:guest@127.0.0.1:${amqpPort}/`,
    dir,
    logFile,
    pid: pid as number,
    startMs: Math.round(performance.now() - started),
    ctl,
    cli,
    async kill() {
      killBeams(node);
      if (!(await waitDead(10_000))) throw new Error(`${nodeName}: beam.smp survived SIGKILL`);
    },
    stop() {
      stopping ??= (async () => {
        if (!live.has(node)) return;
        if (ourBeams(node).some(alive)) {
          try {
            // Without the pid file argument: that variant polls the VM slowly (about 4 s vs 2 s).
            await ctl(["stop"], { timeoutMs: 30_000 });
          } catch {
            // fall through to SIGKILL
          }
          if (!(await waitDead(10_000))) {
            killBeams(node);
            await waitDead(10_000);
          }
        }
        cleanupSync(node);
      })();
      return stopping;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A ready-made TLS node

export interface TlsNodeOptions {
  /** Base node name (default "warren-tls"). */
  name?: string;
  /** Plain AMQP port; default: a free port. */
  amqpPort?: number;
  /** AMQPS port; default: a free port. */
  tlsPort?: number;
  /** Distribution port; default: a free port. */
  distPort?: number;
  /** Extra rabbitmq.conf lines appended to the TLS configuration. */
  extraConfig?: string;
  startTimeoutMs?: number;
}

export interface TlsNode extends ExtraNode {
  tlsPort: number;
  /** amqps://guest:guest@localhost:<tlsPort>/ (the server certificate is for localhost). */
  tlsUrl: string;
  certs: TestCerts;
  /** Whether SASL EXTERNAL is offered (rabbitmq_auth_mechanism_ssl is installed). */
  external: boolean;
  /** User that logs in with the client certificate (no password): "warren-client". */
  certUser: string;
}

/** Hash in RabbitMQ's definitions format (rabbit_password_hashing_sha256). */
function rabbitPasswordHash(password: string): string {
  const salt = randomBytes(4);
  const digest = createHash("sha256")
    .update(Buffer.concat([salt, Buffer.from(password, "utf8")]))
    .digest();
  return Buffer.concat([salt, digest]).toString("base64");
}

/**
 * Starts an extra node with a plain listener and a TLS listener (verify_peer, client certificate
 * optional), certificates from makeCerts(), and, when the rabbitmq_auth_mechanism_ssl plugin is
 * installed, SASL EXTERNAL with the user from the client certificate's CN (warren-client, no
 * password, full permissions on "/"). guest/guest can log in on both listeners.
 */
export async function startTlsNode(opts: TlsNodeOptions = {}): Promise<TlsNode> {
  const free = await findFreePorts(3);
  const amqpPort = opts.amqpPort ?? free[0]!;
  const tlsPort = opts.tlsPort ?? free[1]!;
  const distPort = opts.distPort ?? free[2]!;
  const dir = await mkdtemp(join(tmpdir(), "warren-node-"));
  let certs: TestCerts;
  try {
    certs = await makeCerts(join(dir, "certs"));
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const external = pluginAvailable("rabbitmq_auth_mechanism_ssl");

  // Users are created at boot from a definitions file, which is quicker than three CLI calls.
  const definitions = {
    users: [
      {
        name: "guest",
        password_hash: rabbitPasswordHash("guest"),
        hashing_algorithm: "rabbit_password_hashing_sha256",
        tags: ["administrator"],
      },
      ...(external
        ? [
            {
              name: CLIENT_CN,
              password_hash: "",
              hashing_algorithm: "rabbit_password_hashing_sha256",
              tags: [],
            },
          ]
        : []),
    ],
    vhosts: [{ name: "/" }],
    permissions: [
      { user: "guest", vhost: "/", configure: ".*", write: ".*", read: ".*" },
      ...(external ? [{ user: CLIENT_CN, vhost: "/", configure: ".*", write: ".*", read: ".*" }] : []),
    ],
  };
  const definitionsFile = join(dir, "definitions.json");
  await writeFile(definitionsFile, JSON.stringify(definitions, null, 2));

  const config = [
    `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
    `ssl_options.cacertfile = ${certs.ca.certPath}`,
    `ssl_options.certfile = ${certs.server.certPath}`,
    `ssl_options.keyfile = ${certs.server.keyPath}`,
    "ssl_options.verify = verify_peer",
    "ssl_options.fail_if_no_peer_cert = false",
    "auth_mechanisms.1 = PLAIN",
    "auth_mechanisms.2 = AMQPLAIN",
    ...(external ? ["auth_mechanisms.3 = EXTERNAL", "ssl_cert_login_from = common_name"] : []),
    "loopback_users = none",
    `load_definitions = ${definitionsFile}`,
    opts.extraConfig ?? "",
  ].join("\n");

  const node = await startExtraNode({
    name: opts.name ?? "warren-tls",
    amqpPort,
    distPort,
    config,
    plugins: external ? ["rabbitmq_auth_mechanism_ssl"] : [],
    dir,
    ...(opts.startTimeoutMs !== undefined ? { startTimeoutMs: opts.startTimeoutMs } : {}),
  });
  return {
    ...node,
    tlsPort,
    tlsUrl: `amqps://guest:guest@localhost:${tlsPort}/`,
    certs,
    external,
    certUser: CLIENT_CN,
  };
}

// ---------------------------------------------------------------------------------------------
// Resource alarms on a private node

/** The node's `rabbitmqctl status` as JSON. */
async function nodeStatus(ctl: Ctl): Promise<Record<string, unknown>> {
  const out = await ctl(["status", "--formatter", "json"]);
  const start = out.indexOf("{");
  if (start < 0) throw new Error(`unexpected output of rabbitmqctl status: ${out.slice(0, 300)}`);
  return JSON.parse(out.slice(start)) as Record<string, unknown>;
}

/** The resources ("memory", "disk") the node has an alarm raised for, sorted. */
export async function nodeAlarms(ctl: Ctl): Promise<string[]> {
  const alarms = (await nodeStatus(ctl))["alarms"];
  if (!Array.isArray(alarms)) return [];
  return alarms
    .map((a) =>
      typeof a === "object" && a !== null ? (a as Record<string, unknown>)["resource"] : undefined,
    )
    .filter((r): r is string => typeof r === "string")
    .sort();
}

async function waitForDiskAlarm(ctl: Ctl, raised: boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await nodeAlarms(ctl)).includes("disk") !== raised) {
    if (Date.now() > deadline) {
      throw new Error(`disk alarm did not become ${raised ? "raised" : "cleared"} within ${timeoutMs} ms`);
    }
    await sleep(200);
  }
}

/** Disk free limits (bytes) to restore, per ctl, saved by the first setDiskAlarm(). */
const savedDiskLimits = new Map<Ctl, number>();

/**
 * Raises a free-disk-space alarm: sets the node's disk free limit 1 TB above the free space it
 * reports (after saving the current limit), and resolves once the node reports the alarm.
 *
 * RabbitMQ (rabbit_disk_monitor) re-checks the free space as part of `set_disk_free_limit`
 * itself, so the alarm is raised (and, by clearDiskAlarm(), cleared) by that command, not at the
 * next periodic check: those come every 100 ms to 10 s depending on how far the free space is
 * from the limit, and every 10 s while the alarm is on. Only for private nodes: the main broker
 * shares this disk and is never touched. Pair with clearDiskAlarm() in a finally, or use
 * withDiskAlarm().
 */
export async function setDiskAlarm({ ctl }: { ctl: Ctl }): Promise<void> {
  const status = await nodeStatus(ctl);
  const free = Number(status["disk_free"]);
  if (!Number.isFinite(free) || free <= 0) {
    throw new Error(`the node reports no free disk space figure (disk_free: ${String(status["disk_free"])})`);
  }
  if (!savedDiskLimits.has(ctl)) {
    const limit = Number(status["disk_free_limit"]);
    savedDiskLimits.set(ctl, Number.isFinite(limit) && limit > 0 && limit < free ? limit : 50_000_000);
  }
  await ctl(["set_disk_free_limit", String(free + 1e12)]);
  await waitForDiskAlarm(ctl, true, 10_000);
}

/** Restores the disk free limit saved by setDiskAlarm() (default 50 MB) and waits for the alarm to clear. */
export async function clearDiskAlarm({ ctl }: { ctl: Ctl }): Promise<void> {
  await ctl(["set_disk_free_limit", String(savedDiskLimits.get(ctl) ?? 50_000_000)]);
  savedDiskLimits.delete(ctl);
  await waitForDiskAlarm(ctl, false, 10_000);
}

/** Runs fn while the node's disk alarm is raised; the limit is restored even if fn throws. */
export async function withDiskAlarm<T>(fn: () => Promise<T> | T, opts: { ctl: Ctl }): Promise<T> {
  try {
    await setDiskAlarm(opts);
    return await fn();
  } finally {
    await clearDiskAlarm(opts);
  }
}
