/**
 * The client's own status server (node:http), for people and for probes:
 *
 *   const status = await serveStatus(client, { port: 9465, registry, token });
 *   console.log(status.url); // http://127.0.0.1:9465
 *   await status.close();
 *
 * GET (or HEAD) /: the status page (page.ts); /status.json: the snapshot; /events: Server-Sent Events (`state` per transition,
 * `rates` once per interval); /healthz: liveness and the event loop's delay; /readyz: readiness
 * (503 with the reasons); /metrics: the registry, when one is given. Read-only: other methods get
 * 405. With a token, the page, /status.json and /events need it; the probes, /metrics and the
 * page's stylesheet and script (no data in them) stay open.
 * Nothing shows credentials. docs/status.md.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { watchEventLoop } from "../amqp/event-loop.js";
import type { Client } from "../client/client.js";
import { ConfigError } from "../errors.js";
import { closeServer, listen, writeMetrics } from "../observability/http.js";
import type { MetricsRegistry } from "../observability/metrics/options.js";
import { tokenCheck } from "./auth.js";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./page.js";
import { readiness } from "./readiness.js";
import { StatusRecorder } from "./recorder.js";
import { readinessInput, snapshot } from "./snapshot.js";
import { DEFAULT_MAX_BUFFERED, SseHub } from "./sse.js";
import type { Health } from "./types.js";

/** `serveStatus()` options. */
export interface StatusServerOptions {
  /** TCP port (default 9465; 0 picks a free one). */
  port?: number;
  /** Interface to listen on (default "127.0.0.1": this machine only). */
  host?: string;
  /** Also serve this registry at /metrics (Prometheus' text format). */
  registry?: MetricsRegistry;
  /**
   * Require `Authorization: Bearer <token>` (or `?token=<token>`) for /status.json and /events;
   * /healthz, /readyz and /metrics stay open.
   */
  token?: string;
  /** Transitions kept for /status.json (default 300). */
  history?: number;
  /** How often /events sends `rates`, in ms (default 500, at least 250). */
  ratesIntervalMs?: number;
  /** Bytes buffered for one /events client past which it is dropped (default 256 KiB). */
  maxBufferedBytes?: number;
}

/** What `serveStatus()` resolves with. */
export interface StatusServer {
  /** Where it listens, e.g. http://127.0.0.1:9465 (a wildcard host shows as 127.0.0.1). */
  readonly url: string;
  /** Stops recording, ends the event streams, stops listening and closes open connections. */
  close(): Promise<void>;
}

const ENDPOINTS = ["/", "/status.json", "/events", "/healthz", "/readyz"];

/**
 * Serves the client's status; resolves once listening. Rejects with ConfigError for an empty
 * `token`, or with the listen error (e.g. EADDRINUSE).
 */
export async function serveStatus(client: Client, options: StatusServerOptions = {}): Promise<StatusServer> {
  if (options.token === "") throw new ConfigError("serveStatus({ token }) must not be empty");
  const authorized = tokenCheck(options.token);
  const recorder = new StatusRecorder(client, {
    ...(options.history !== undefined ? { history: options.history } : {}),
    ...(options.ratesIntervalMs !== undefined ? { ratesIntervalMs: options.ratesIntervalMs } : {}),
  });
  // The recorder's events go to the hub only while it has clients (so rates are computed only then).
  let unsubscribe: (() => void) | undefined;
  const hub = new SseHub(options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED, (size) => {
    if (size > 0 && unsubscribe === undefined) {
      unsubscribe = recorder.subscribe((e) =>
        e.type === "state" ? hub.send("state", e.transition) : hub.send("rates", e.rates),
      );
    } else if (size === 0 && unsubscribe !== undefined) {
      unsubscribe();
      unsubscribe = undefined;
    }
  });
  // The process's one event-loop monitor (shared with the connections and the metrics).
  const loop = watchEventLoop({ distribution: true });
  const started = Date.now();
  const endpoints = options.registry ? [...ENDPOINTS, "/metrics"] : ENDPOINTS;

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    res.setHeader("Cache-Control", "no-store");
    res.setHeader("X-Content-Type-Options", "nosniff");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      json(req, res, 405, { error: "read-only: only GET and HEAD" });
      return;
    }
    const url = new URL(req.url ?? "/", "http://status.invalid");
    switch (url.pathname) {
      case "/":
        if (!authorized(req, url)) unauthorized(req, res);
        else asset(req, res, "text/html; charset=utf-8", PAGE_HTML);
        return;
      case "/page.css":
        asset(req, res, "text/css; charset=utf-8", PAGE_CSS);
        return;
      case "/page.js":
        asset(req, res, "text/javascript; charset=utf-8", PAGE_JS);
        return;
      case "/healthz": {
        const health: Health = {
          status: "ok",
          uptimeSeconds: Math.round((Date.now() - started) / 1000),
          eventLoopDelayMs: loop.monitor.delay(),
        };
        json(req, res, 200, health);
        return;
      }
      case "/readyz": {
        const r = readiness(readinessInput(client));
        json(req, res, r.ready ? 200 : 503, r);
        return;
      }
      case "/metrics":
        if (options.registry) writeMetrics(options.registry, req, res);
        else json(req, res, 404, { error: "no registry: serveStatus(client, { registry })", endpoints });
        return;
      case "/status.json":
        if (!authorized(req, url)) unauthorized(req, res);
        else json(req, res, 200, snapshot(client, recorder, { clients: hub.size, dropped: hub.dropped }));
        return;
      case "/events":
        if (!authorized(req, url)) unauthorized(req, res);
        else stream(req, res, hub);
        return;
      default:
        json(req, res, 404, { error: "not found", endpoints });
    }
  });

  let url: string;
  try {
    url = await listen(server, options.port ?? 9465, options.host ?? "127.0.0.1");
  } catch (e) {
    recorder.close();
    loop.release();
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    url,
    close: () => {
      closing ??= (async () => {
        recorder.close();
        loop.release();
        hub.close();
        await closeServer(server);
      })();
      return closing;
    },
  };
}

/** Only this server's own script, stylesheet and requests: nothing from elsewhere, no inline code. */
const PAGE_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/** One of the page's own files. */
function asset(req: IncomingMessage, res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, {
    "Content-Type": type,
    "Content-Length": Buffer.byteLength(body),
    "Content-Security-Policy": PAGE_POLICY,
    "Referrer-Policy": "no-referrer",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

/** Starts an event stream; the client leaves the hub when its connection closes. */
function stream(req: IncomingMessage, res: ServerResponse, hub: SseHub): void {
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    Connection: "keep-alive",
    "X-Accel-Buffering": "no",
  });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  // A comment and the reconnection delay: the headers go out now and EventSource waits 2 s to retry.
  res.write(": warren status\nretry: 2000\n\n");
  const remove = hub.add(res);
  res.on("close", remove);
}

function json(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(req.method === "HEAD" ? undefined : text);
}

function unauthorized(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader("WWW-Authenticate", 'Bearer realm="warren status"');
  json(req, res, 401, { error: "a token is needed: Authorization: Bearer <token>, or ?token=<token>" });
}

export type { LoopDelayStats } from "../amqp/event-loop.js";
export type {
  ClientStatus,
  ConsumerStatus,
  ErrorInfo,
  Health,
  PublisherStatus,
  Rates,
  Readiness,
  Recovery,
  RestartBudget,
  RpcClientStatus,
  RpcServerStatus,
  StatusSnapshot,
  Transition,
} from "./types.js";
