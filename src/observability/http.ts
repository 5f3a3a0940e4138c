/**
 * A minimal /metrics endpoint (node:http) for services without their own HTTP server:
 *
 *   const server = await serveMetrics({ port: 9464, registry });
 *   console.log(server.url); // http://127.0.0.1:9464/metrics
 *   await server.close();
 *
 * GET (or HEAD) /metrics answers with the registry in Prometheus' text format; anything
 * else is 404 (405 for other methods on /metrics).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { MetricsRegistry } from "./metrics/options.js";
import { promRegistry } from "./metrics/prom.js";

/** `serveMetrics()` options. */
export interface ServeMetricsOptions {
  /** TCP port (default 9464, the port commonly used for exporters; 0 picks a free one). */
  port?: number;
  /** Interface to listen on (default "0.0.0.0": all IPv4 interfaces, so Prometheus can reach it). */
  host?: string;
  /** What to serve: a prom-client Registry (default prom-client's default registry). */
  registry?: MetricsRegistry;
  /** Path of the endpoint (default "/metrics"). */
  path?: string;
}

/** What `serveMetrics()` resolves with. */
export interface MetricsServer {
  /** Where the metrics are, e.g. http://127.0.0.1:9464/metrics (a wildcard host shows as 127.0.0.1). */
  readonly url: string;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * Serves a registry's metrics over HTTP; resolves once listening. Rejects with Node's listen error
 * (e.g. EADDRINUSE when the port is taken), or a MissingDependencyError when prom-client is not
 * installed.
 */
export async function serveMetrics(options: ServeMetricsOptions = {}): Promise<MetricsServer> {
  const registry: MetricsRegistry = promRegistry(options.registry);
  const path = options.path ?? "/metrics";
  const host = options.host ?? "0.0.0.0";
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = (req.url ?? "/").split("?")[0];
    if (url !== path) {
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end(`not found: try ${path}\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" }).end();
      return;
    }
    writeMetrics(registry, req, res);
  });
  const base = await listen(server, options.port ?? 9464, host);
  return { url: `${base}${path}`, close: () => closeServer(server) };
}

/** Answers a GET or HEAD with the registry in Prometheus' text format (500 when collecting fails). */
export function writeMetrics(registry: MetricsRegistry, req: IncomingMessage, res: ServerResponse): void {
  registry.metrics().then(
    (text) => {
      res.writeHead(200, { "Content-Type": registry.contentType });
      res.end(req.method === "HEAD" ? undefined : text);
    },
    (err: unknown) => {
      res
        .writeHead(500, { "Content-Type": "text/plain; charset=utf-8" })
        .end(`collecting metrics failed: ${(err as Error)?.message ?? String(err)}\n`);
    },
  );
}

/**
 * Starts `server` listening and resolves with its base URL, e.g. http://127.0.0.1:9464 (a wildcard
 * host shows as 127.0.0.1); rejects with the listen error (EADDRINUSE…).
 */
export async function listen(server: Server, port: number, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown =
    address.address === "0.0.0.0" || address.address === "::"
      ? "127.0.0.1"
      : address.family === "IPv6"
        ? `[${address.address}]`
        : address.address;
  return `http://${shown}:${address.port}`;
}

/** Stops listening and closes open connections. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
