/**
 * warren's supervised client with its status server served and watched, to measure what a served
 * status page costs the service: serveStatus() on an ephemeral port, with a watcher in a child
 * process (as a browser would be: not in the measured process) holding one /events stream open
 * (rates every 500 ms, each transition) and fetching /status.json every 2 s, as the page does.
 * Compared with "warren-client" in the same run (bench/run.ts prints the ratio).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { type StatusServer, serveStatus } from "../../src/index.js";
import type { OpenOptions } from "./types.js";
import { WarrenClientClient } from "./warren-client.js";

/** The watcher: prints "watching" once the event stream answered, then reads and polls until killed. */
const WATCHER = `
const http = require("node:http");
const base = process.argv[1];
http.get(base + "/events", (res) => {
  process.stdout.write("watching\\n");
  res.resume();
});
setInterval(() => http.get(base + "/status.json", (res) => res.resume()).on("error", () => {}), 2000);
`;

export class WarrenStatusClient extends WarrenClientClient {
  override readonly name = "warren-status";
  private status: StatusServer | undefined;
  private watcher: ChildProcess | undefined;

  override async open(o: OpenOptions): Promise<void> {
    await super.open(o);
    const status = await serveStatus(this.client, { port: 0 });
    this.status = status;
    const watcher = spawn(process.execPath, ["-e", WATCHER, status.url], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.watcher = watcher;
    await once(watcher.stdout!, "data");
  }

  override async close(): Promise<void> {
    this.watcher?.kill();
    await this.status?.close();
    await super.close();
  }
}
