/**
 * A private three-node (or n-node) RabbitMQ cluster on 127.0.0.1 for fail-over tests, following
 * /work/shared/design/RABBITMQ-LOCAL.md:
 *
 * - the real scripts in /usr/lib/rabbitmq/bin run as root with HOME set to a directory of our own
 *   holding one fresh .erlang.cookie (mode 400) shared by all the nodes and their CLI calls, so
 *   nothing here can talk to the main node rabbit@localhost;
 * - RABBITMQ_CONF_ENV_FILE points at an empty file; inherited RABBITMQ_* / ERL_* are dropped;
 * - each node has its own name, AMQP port, distribution port, mnesia/log/pid/config files; the CLI
 *   tools use a port range of their own;
 * - nodes 2..n join node 1 with stop_app, reset, join_cluster, start_app;
 * - each beam.smp carries a marker variable in its environment and is only killed after checking it.
 *
 * stop() stops every node and removes the directory. If the process exits without it, an exit hook
 * kills the nodes, and a detached watchdog kills them about a second after the process is killed.
 *
 * Needs root and Debian's rabbitmq-server package (3.10 here).
 */

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { chmod, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sleep } from "../../test/support/async.js";
import { run } from "../../test/support/broker.js";
import {
  cleanEnv,
  extraNodesSupported,
  findFreePorts,
  RABBITMQ_BIN,
  tcpAnswers,
} from "../../test/support/extra-node.js";

const MARKER_KEY = "WARREN_CLUSTER_NODE";

export interface ClusterOptions {
  /** Number of nodes (default 3). */
  nodes?: number;
  /** Base node name (default "warren-cluster"): nodes are <name>-<pid>-<i>@localhost. */
  name?: string;
  /** Extra rabbitmq.conf text for every node. */
  config?: string;
  /** How long each node may take to boot (default 60 s). */
  startTimeoutMs?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface Cluster {
  /** amqp://guest:guest@127.0.0.1:<port>/ for each node, in node order. */
  urls: string[];
  nodeNames: string[];
  amqpPorts: number[];
  /** The cluster's directory (removed by stop()). */
  dir: string;
  /** How long startCluster() took, in ms. */
  startMs: number;
  /** Environment for running /usr/lib/rabbitmq/bin/rabbitmqctl -n <node> by hand (HOME, ports). */
  ctlEnv: Record<string, string>;
  /** rabbitmqctl -n <node i> ...args; resolves with stdout. */
  ctl(nodeIndex: number, args: string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** Hard failure of node i: SIGKILL its beam.smp; resolves once it is gone. */
  kill(nodeIndex: number): Promise<void>;
  /**
   * Resolves once stopping node i would leave every quorum queue with an online majority
   * (`rabbitmq-queues check_if_node_is_quorum_critical`): what an operator checks before taking a
   * node down, e.g. after another node came back and its queue members are catching up.
   */
  untilNotQuorumCritical(nodeIndex: number, timeoutMs?: number): Promise<void>;
  /** Boots node i again (after kill) with its data: it rejoins the cluster; resolves once it runs there. */
  restart(nodeIndex: number): Promise<void>;
  /** Whether node i's beam.smp is running. */
  alive(nodeIndex: number): boolean;
  /** Index of the node holding the leader of quorum queue `queue` (vhost "/"), asked of a live node. */
  leaderOf(queue: string): Promise<number>;
  /** Stops every node and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

interface NodeRec {
  nodeName: string;
  marker: string;
  pidFile: string;
}

function isOurBeam(pid: number, marker: string): boolean {
  try {
    if (!readlinkSync(`/proc/${pid}/exe`).endsWith("/beam.smp")) return false;
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(marker);
  } catch {
    return false;
  }
}

function ourBeams(node: NodeRec): number[] {
  try {
    const pid = Number.parseInt(readFileSync(node.pidFile, "utf8").trim(), 10);
    if (pid > 0 && isOurBeam(pid, node.marker)) return [pid];
  } catch {
    // no pid file yet: scan
  }
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && isOurBeam(pid, node.marker)) found.push(pid);
  }
  return found;
}

function killBeams(node: NodeRec): void {
  for (const pid of ourBeams(node)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

const WATCHDOG = `
owner="$1"; dir="$2"; shift 2
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
for marker in "$@"; do
  for p in $(grep -lzxF -- "$marker" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    case "$(readlink "/proc/$p/exe" 2>/dev/null)" in
      */beam.smp) grep -qzxF -- "$marker" "/proc/$p/environ" 2>/dev/null && kill -9 "$p" ;;
    esac
  done
done
rm -rf -- "$dir"
`;

/** Starts `nodes` private RabbitMQ nodes sharing one cookie and joins them into one cluster. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const started = performance.now();
  const count = opts.nodes ?? 3;
  const log = opts.log ?? (() => {});
  if (!extraNodesSupported())
    throw new Error(`a local cluster needs root and ${RABBITMQ_BIN}/rabbitmq-server`);
  const base = opts.name ?? "warren-cluster";
  if (!/^[A-Za-z0-9_-]+$/.test(base)) throw new Error(`invalid node base name: ${base}`);

  const ports = await findFreePorts(2 * count + 1);
  const ctlMin = ports[2 * count]! >= 32767 - 10 ? ports[2 * count]! - 10 : ports[2 * count]!;
  const dir = await mkdtemp(join(tmpdir(), "warren-cluster-"));
  const home = join(dir, "home");
  await mkdir(home);
  const cookie = Array.from(randomBytes(20), (b) => String.fromCharCode(65 + (b % 26))).join("");
  await writeFile(join(home, ".erlang.cookie"), cookie, { mode: 0o400 });
  await chmod(join(home, ".erlang.cookie"), 0o400);
  const confEnv = join(dir, "rabbitmq-env.conf");
  await writeFile(confEnv, "");
  const ctlEnv: NodeJS.ProcessEnv = {
    ...cleanEnv(MARKER_KEY),
    HOME: home,
    RABBITMQ_CONF_ENV_FILE: confEnv,
    RABBITMQ_CTL_DIST_PORT_MIN: String(ctlMin),
    RABBITMQ_CTL_DIST_PORT_MAX: String(ctlMin + 10),
    ERL_EPMD_ADDRESS: "127.0.0.1",
  };

  const nodes: NodeRec[] = [];
  const amqpPorts: number[] = [];
  const nodeNames: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const nodeName = `${base}-${process.pid}-${i + 1}@localhost`;
    nodeNames.push(nodeName);
    amqpPorts.push(ports[2 * i]!);
    nodes.push({
      nodeName,
      marker: `${MARKER_KEY}=${nodeName}:${dir}`,
      pidFile: join(dir, `node${i + 1}`, "node.pid"),
    });
  }

  let stopped = false;
  const cleanupSync = () => {
    for (const n of nodes) killBeams(n);
    try {
      process.kill(-(watchdog.pid ?? 0), "SIGKILL");
    } catch {
      // gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => {
    if (!stopped) cleanupSync();
  };
  process.on("exit", onExit);
  const watchdog = spawn(
    "/bin/sh",
    ["-c", WATCHDOG, "warren-cluster-watchdog", String(process.pid), dir, ...nodes.map((n) => n.marker)],
    { detached: true, stdio: "ignore", env: cleanEnv(MARKER_KEY) },
  );
  watchdog.on("error", () => {});
  watchdog.unref();

  const ctl = (i: number, args: string[], o: { timeoutMs?: number } = {}) => {
    const node = nodes[i];
    if (!node) return Promise.reject(new Error(`no node ${i}`));
    return run(join(RABBITMQ_BIN, "rabbitmqctl"), ["-n", node.nodeName, ...args], {
      env: ctlEnv,
      cwd: dir,
      timeoutMs: o.timeoutMs ?? 60_000,
    });
  };

  const boot = async (i: number) => {
    const node = nodes[i]!;
    const nd = join(dir, `node${i + 1}`);
    await Promise.all(["mnesia", "log", "conf.d"].map((d) => mkdir(join(nd, d), { recursive: true })));
    await writeFile(join(nd, "rabbitmq.conf"), `loopback_users = none\n${opts.config ?? ""}\n`);
    await writeFile(join(nd, "advanced.config"), "[].");
    await writeFile(join(nd, "enabled_plugins"), "[].\n");
    const env: NodeJS.ProcessEnv = {
      ...ctlEnv,
      RABBITMQ_NODENAME: node.nodeName,
      RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
      RABBITMQ_NODE_PORT: String(amqpPorts[i]),
      RABBITMQ_DIST_PORT: String(ports[2 * i + 1]),
      RABBITMQ_PID_FILE: node.pidFile,
      RABBITMQ_MNESIA_BASE: join(nd, "mnesia"),
      RABBITMQ_LOG_BASE: join(nd, "log"),
      RABBITMQ_CONFIG_FILE: join(nd, "rabbitmq.conf"),
      RABBITMQ_CONFIG_FILES: join(nd, "conf.d"),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(nd, "advanced.config"),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(nd, "enabled_plugins"),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
      ERL_CRASH_DUMP: join(nd, "erl_crash.dump"),
      [MARKER_KEY]: `${node.nodeName}:${dir}`,
    };
    let exited: string | undefined;
    const out = openSync(join(nd, "startup.log"), "a");
    try {
      const server = spawn(join(RABBITMQ_BIN, "rabbitmq-server"), [], {
        detached: true,
        stdio: ["ignore", out, out],
        env,
        cwd: nd,
      });
      server.on("error", (e) => {
        exited = e.message;
      });
      server.on("exit", (code, signal) => {
        exited = `rabbitmq-server exited (${signal ?? `status ${code}`})`;
      });
      server.unref();
    } finally {
      closeSync(out);
    }
    const timeoutMs = opts.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    while (!(await tcpAnswers(amqpPorts[i]!, "127.0.0.1", 500))) {
      if (exited !== undefined) throw new Error(`${node.nodeName}: ${exited} during boot (see ${nd})`);
      if (Date.now() > deadline) throw new Error(`${node.nodeName}: no AMQP port within ${timeoutMs} ms`);
      await sleep(200);
    }
    await ctl(i, ["await_startup", "--timeout", "60"], { timeoutMs: 70_000 });
    log(`${node.nodeName} up on amqp port ${amqpPorts[i]}`);
  };

  try {
    await Promise.all(nodes.map((_, i) => boot(i)));
    for (let i = 1; i < count; i += 1) {
      await ctl(i, ["stop_app"]);
      await ctl(i, ["reset"]);
      await ctl(i, ["join_cluster", nodeNames[0]!]);
      await ctl(i, ["start_app"]);
      await ctl(i, ["await_startup", "--timeout", "60"], { timeoutMs: 70_000 });
      log(`${nodeNames[i]} joined ${nodeNames[0]}`);
    }
  } catch (error) {
    stopped = true;
    process.off("exit", onExit);
    cleanupSync();
    throw error;
  }

  const isAlive = (i: number) => {
    const node = nodes[i];
    if (!node) return false;
    return ourBeams(node).some((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat[stat.lastIndexOf(")") + 2] !== "Z";
      } catch {
        return false;
      }
    });
  };

  let stopping: Promise<void> | undefined;
  return {
    urls: amqpPorts.map((p) => `amqp://guest:guest@127.0.0.1:${p}/`),
    nodeNames,
    amqpPorts,
    dir,
    startMs: Math.round(performance.now() - started),
    ctlEnv: {
      HOME: home,
      RABBITMQ_CONF_ENV_FILE: confEnv,
      RABBITMQ_CTL_DIST_PORT_MIN: String(ctlMin),
      RABBITMQ_CTL_DIST_PORT_MAX: String(ctlMin + 10),
      ERL_EPMD_ADDRESS: "127.0.0.1",
    },
    ctl,
    alive: isAlive,
    async kill(i) {
      const node = nodes[i];
      if (!node) throw new Error(`no node ${i}`);
      killBeams(node);
      for (let t = 0; t < 100 && isAlive(i); t += 1) await sleep(100);
      if (isAlive(i)) throw new Error(`${node.nodeName}: beam.smp survived SIGKILL`);
    },
    async untilNotQuorumCritical(i, timeoutMs = 60_000) {
      const node = nodes[i];
      if (!node) throw new Error(`no node ${i}`);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const ok = await run(
          join(RABBITMQ_BIN, "rabbitmq-queues"),
          ["-n", node.nodeName, "check_if_node_is_quorum_critical"],
          { env: ctlEnv, cwd: dir, timeoutMs: 30_000 },
        ).then(
          () => true,
          () => false,
        );
        if (ok) return;
        if (Date.now() > deadline)
          throw new Error(`${node.nodeName} still quorum critical after ${timeoutMs} ms`);
        await sleep(200);
      }
    },
    async restart(i) {
      if (!nodes[i]) throw new Error(`no node ${i}`);
      if (isAlive(i)) throw new Error(`${nodes[i].nodeName} is running`);
      await boot(i);
      // Back in the cluster: every node lists it among the running ones.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const status = await ctl(i, ["cluster_status", "--formatter", "json"]).catch(() => "{}");
        const running = (JSON.parse(status) as { running_nodes?: string[] }).running_nodes ?? [];
        if (running.length === count) break;
        if (Date.now() > deadline) throw new Error(`${nodes[i].nodeName} did not rejoin: running ${running}`);
        await sleep(200);
      }
    },
    async leaderOf(queue) {
      let lastError: unknown = new Error("no live node");
      for (let i = 0; i < count; i += 1) {
        if (!isAlive(i)) continue;
        try {
          const out = await ctl(i, ["list_queues", "-q", "--no-table-headers", "name", "leader"], {
            timeoutMs: 20_000,
          });
          for (const line of out.split("\n")) {
            const [name, leader] = line.trim().split(/\s+/);
            if (name === queue && leader) {
              const index = nodeNames.indexOf(leader);
              if (index >= 0) return index;
              throw new Error(`leader of ${queue} is ${leader}, not a node of this cluster`);
            }
          }
          throw new Error(`queue ${queue} not listed by ${nodeNames[i]}:\n${out}`);
        } catch (error) {
          lastError = error;
        }
      }
      throw lastError;
    },
    stop() {
      stopping ??= (async () => {
        await Promise.all(
          nodes.map(async (_, i) => {
            if (!isAlive(i)) return;
            try {
              await ctl(i, ["stop"], { timeoutMs: 30_000 });
            } catch {
              // SIGKILL below
            }
          }),
        );
        stopped = true;
        process.off("exit", onExit);
        cleanupSync();
      })();
      return stopping;
    },
  };
}
