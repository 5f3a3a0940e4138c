/**
 * `npm run demo`: the demo service (examples/demo.ts, after making sure a broker answers, as
 * `npm start` does), or with `--cluster` the fail-over showcase on a local three-node cluster
 * (examples/cluster-demo.ts). Options after `--` go to the one that runs.
 *
 *   npm run demo -- --duration 10
 *   npm run demo -- --cluster --duration 90
 */
import { spawnSync } from "node:child_process";

if (process.argv.includes("--cluster")) {
  await import("./cluster-demo.js");
} else {
  const broker = spawnSync("bash", ["scripts/broker.sh"], { stdio: "inherit" });
  if (broker.status !== 0) process.exit(broker.status ?? 1);
  await import("./demo.js");
}
