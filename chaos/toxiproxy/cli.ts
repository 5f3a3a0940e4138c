/**
 * Command line entry of the Toxiproxy-compatible server.
 *
 *   npm run toxiproxy -- [--host 127.0.0.1] [--port 8474] [--config proxies.json]
 *   npx warren-toxiproxy ...          (after npm run build)
 *
 * Prints the API URL on stdout once listening; stops cleanly on SIGINT/SIGTERM.
 */
import { readFile } from "node:fs/promises";
import { startToxiproxy, TOXIPROXY_API_VERSION } from "./server.js";

const USAGE = `Usage: warren-toxiproxy [options]

A Toxiproxy-compatible fault-injection proxy (HTTP API of Toxiproxy ${TOXIPROXY_API_VERSION}).

Options:
  --host HOST      address of the HTTP API (default 127.0.0.1)
  --port PORT      port of the HTTP API (default 8474; 0 picks a free port)
  --config FILE    JSON array of proxies to create at startup (the POST /populate format)
  -h, --help       show this help
`;

interface CliOptions {
  host: string;
  port: number;
  config: string | undefined;
}

function parseArgs(args: string[]): CliOptions {
  const options: CliOptions = { host: "127.0.0.1", port: 8474, config: undefined };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    // Accept --name value, --name=value and the reference server's single-dash -name value.
    const match = /^--?(host|port|config)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unknown argument: ${arg}`);
    const name = match[1]!;
    const value = match[2] ?? args[++i];
    if (value === undefined) throw new Error(`missing value for --${name}`);
    if (name === "host") options.host = value;
    else if (name === "config") options.config = value;
    else {
      const port = /^\d+$/.test(value) ? Number(value) : Number.NaN;
      if (!(port >= 0 && port <= 65535)) throw new Error(`invalid port: ${value}`);
      options.port = port;
    }
  }
  return options;
}

async function main(): Promise<void> {
  let options: CliOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`warren-toxiproxy: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  const proxies =
    options.config === undefined
      ? undefined
      : (JSON.parse(await readFile(options.config, "utf8")) as unknown);
  const server = await startToxiproxy({
    host: options.host,
    port: options.port,
    ...(proxies === undefined ? {} : { proxies }),
  });
  process.stdout.write(`${server.url}\n`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`warren-toxiproxy: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    process.stderr.write(`warren-toxiproxy: ${signal}, stopping\n`);
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`warren-toxiproxy: error while stopping: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`warren-toxiproxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
