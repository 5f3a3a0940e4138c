/**
 * Runs a private local RabbitMQ cluster until Ctrl-C, for your own fail-over experiments.
 *
 *   sudo npx tsx chaos/cluster/cli.ts [--nodes 3]
 *
 * Prints one AMQP URL per line on stdout once the nodes have joined, then the rabbitmqctl command
 * line to reach each node on stderr. Ctrl-C (SIGINT) or SIGTERM stops every node and removes its
 * files. Needs root and Debian's rabbitmq-server package; never touches rabbit@localhost.
 */
import { join } from "node:path";
import { RABBITMQ_BIN } from "../../test/support/extra-node.js";
import { startCluster } from "./cluster.js";

function parseNodes(args: string[]): number {
  let nodes = 3;
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") {
      process.stdout.write("Usage: tsx chaos/cluster/cli.ts [--nodes N]\n");
      process.exit(0);
    }
    const m = /^--nodes(?:=(\d+))?$/.exec(arg);
    if (!m) throw new Error(`unknown argument: ${arg}`);
    nodes = Number(m[1] ?? args[++i]);
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) throw new Error("--nodes takes 1..9");
  }
  return nodes;
}

const cluster = await startCluster({
  nodes: parseNodes(process.argv.slice(2)),
  log: (line) => process.stderr.write(`${line}\n`),
});
for (const url of cluster.urls) process.stdout.write(`${url}\n`);
process.stderr.write(`cluster up in ${cluster.startMs} ms; files in ${cluster.dir}\n`);
for (const name of cluster.nodeNames) {
  process.stderr.write(
    `  ${Object.entries(cluster.ctlEnv)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")} ${join(RABBITMQ_BIN, "rabbitmqctl")} -n ${name} cluster_status\n`,
  );
}
process.stderr.write("Ctrl-C stops the cluster.\n");

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  process.stderr.write("stopping…\n");
  cluster.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    },
  );
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
setInterval(() => {}, 1 << 30);
