/**
 * A Toxiproxy-compatible fault proxy: the HTTP API of Shopify's Toxiproxy 2.x (the one
 * toxiproxy-node-client and the other clients speak) on top of ./proxy.ts, using only Node's
 * standard library.
 *
 *   const toxiproxy = await startToxiproxy({ host: "127.0.0.1", port: 8474 });
 *   // ... new Toxiproxy(toxiproxy.url) ...
 *   await toxiproxy.close();
 */
import { randomBytes } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ApiError, joinHostPort, ProxyState, resolveAddress, type ToxicRecord, toxicJSON } from "./proxy.js";
import { AttributeError, type Direction, field, isToxicType, mergeAttributes } from "./toxics.js";

/** The Toxiproxy release whose API this server implements (answered by GET /version). */
export const TOXIPROXY_API_VERSION = "2.12.0";

export interface ToxiproxyOptions {
  /** Address of the HTTP API (default 127.0.0.1). */
  host?: string;
  /** Port of the HTTP API (default 8474; 0 picks a free one). */
  port?: number;
  /** Proxies to create at startup, in the format of POST /populate. */
  proxies?: unknown;
}

export interface ToxiproxyServer {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8474 (for `new Toxiproxy(url)`). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops every proxy (closing their connections) and the HTTP API. */
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;

type Json = Record<string, unknown>;

class Reply {
  constructor(
    readonly status: number,
    readonly body: string | null,
    readonly contentType = "application/json",
  ) {}

  static json(status: number, value: unknown): Reply {
    return new Reply(status, JSON.stringify(value));
  }
}

function errorReply(err: unknown, extra?: Json): Reply {
  const status = err instanceof ApiError ? err.status : 500;
  const message = err instanceof Error ? err.message : String(err);
  // Like the reference server: JSON written through Go's http.Error, so labelled text/plain.
  return new Reply(
    status,
    `${JSON.stringify({ error: message, status, ...extra })}\n`,
    "text/plain; charset=utf-8",
  );
}

function badBody(detail: string): ApiError {
  return new ApiError(400, `bad request body: ${detail}`);
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value === "object" ? "object" : typeof value;
}

function parseBody(text: string): unknown {
  if (text.trim() === "") throw badBody("EOF");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badBody((err as Error).message);
  }
}

function asObject(value: unknown, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badBody(`json: cannot unmarshal ${jsonKind(value)} into Go value of type ${what}`);
  }
  return value as Json;
}

function optional<T>(
  obj: Json,
  key: string,
  what: string,
  type: "string" | "boolean" | "number",
): T | undefined {
  const value = field(obj, key);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== type) {
    throw badBody(
      `json: cannot unmarshal ${jsonKind(value)} into Go struct field ${what}.${key} of type ${type}`,
    );
  }
  return value as T;
}

interface ProxyFields {
  name: string | undefined;
  listen: string | undefined;
  upstream: string | undefined;
  enabled: boolean | undefined;
}

function proxyFields(value: unknown): ProxyFields {
  const obj = asObject(value, "toxiproxy.Proxy");
  return {
    name: optional<string>(obj, "name", "Proxy", "string"),
    listen: optional<string>(obj, "listen", "Proxy", "string"),
    upstream: optional<string>(obj, "upstream", "Proxy", "string"),
    enabled: optional<boolean>(obj, "enabled", "Proxy", "boolean"),
  };
}

class ToxiproxyApi {
  readonly proxies = new Map<string, ProxyState>();
  private queue: Promise<unknown> = Promise.resolve();

  /** Runs API operations one at a time. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private proxy(name: string): ProxyState {
    const proxy = this.proxies.get(name);
    if (!proxy) throw new ApiError(404, "proxy not found");
    return proxy;
  }

  private toxic(proxy: ProxyState, name: string): ToxicRecord {
    const toxic = proxy.findToxic(name);
    if (!toxic) throw new ApiError(404, "toxic not found");
    return toxic;
  }

  async route(method: string, parts: string[], body: string): Promise<Reply> {
    const [a, b, c, d] = parts;
    const update = method === "POST" || method === "PATCH";
    if (parts.length === 1 && a === "proxies") {
      if (method === "GET") return this.listProxies();
      if (method === "POST") return this.createProxy(parseBody(body));
    } else if (parts.length === 1 && a === "populate") {
      if (method === "POST") return this.populate(body);
    } else if (parts.length === 1 && a === "reset") {
      if (method === "POST") return this.reset();
    } else if (parts.length === 1 && a === "version") {
      if (method === "GET") {
        return new Reply(
          200,
          `{"version": ${JSON.stringify(TOXIPROXY_API_VERSION)}}\n`,
          "application/json;charset=utf-8",
        );
      }
    } else if (parts.length === 2 && a === "proxies" && b) {
      if (method === "GET") return Reply.json(200, this.proxy(b));
      if (update) return this.updateProxy(b, parseBody(body));
      if (method === "DELETE") return this.deleteProxy(b);
    } else if (parts.length === 3 && a === "proxies" && b && c === "toxics") {
      if (method === "GET") return Reply.json(200, this.proxy(b).allToxics().map(toxicJSON));
      if (method === "POST") return this.createToxic(b, parseBody(body));
    } else if (parts.length === 4 && a === "proxies" && b && c === "toxics" && d) {
      if (method === "GET") return Reply.json(200, toxicJSON(this.toxic(this.proxy(b), d)));
      if (update) return this.updateToxic(b, d, parseBody(body));
      if (method === "DELETE") return this.deleteToxic(b, d);
    } else {
      return new Reply(404, "404 page not found\n", "text/plain; charset=utf-8");
    }
    return new Reply(405, null);
  }

  private listProxies(): Reply {
    const out: Json = {};
    for (const name of [...this.proxies.keys()].sort()) out[name] = this.proxies.get(name);
    return Reply.json(200, out);
  }

  private async createProxy(body: unknown): Promise<Reply> {
    const fields = proxyFields(body);
    if (!fields.name) throw new ApiError(400, "missing required field: name");
    if (!fields.upstream) throw new ApiError(400, "missing required field: upstream");
    if (this.proxies.has(fields.name)) throw new ApiError(409, "proxy already exists");
    const proxy = new ProxyState(fields.name, fields.listen ?? "", fields.upstream);
    if (fields.enabled ?? true) await proxy.start();
    this.proxies.set(proxy.name, proxy);
    return Reply.json(201, proxy);
  }

  /** Whether `listen`/`upstream` differ from the proxy's (listen compared after resolving). */
  private async differs(proxy: ProxyState, listen: string, upstream: string): Promise<boolean> {
    if (upstream !== proxy.upstream) return true;
    if (listen === proxy.listen) return false;
    return (await resolveAddress(listen)) !== proxy.listen;
  }

  private async updateProxy(name: string, body: unknown): Promise<Reply> {
    const proxy = this.proxy(name);
    const fields = proxyFields(body);
    const listen = fields.listen ?? proxy.listen;
    const upstream = fields.upstream ?? proxy.upstream;
    const enabled = fields.enabled ?? proxy.enabled;
    if (await this.differs(proxy, listen, upstream)) {
      await proxy.stop();
      proxy.listen = listen;
      proxy.upstream = upstream;
    }
    if (enabled) await proxy.start();
    else await proxy.stop();
    return Reply.json(200, proxy);
  }

  private async deleteProxy(name: string): Promise<Reply> {
    const proxy = this.proxy(name);
    this.proxies.delete(name);
    await proxy.stop();
    return new Reply(204, null);
  }

  async populate(text: string): Promise<Reply> {
    let entries: ProxyFields[];
    try {
      const body = parseBody(text);
      if (!Array.isArray(body)) {
        throw badBody(`json: cannot unmarshal ${jsonKind(body)} into Go value of type []toxiproxy.Proxy`);
      }
      entries = body.map(proxyFields);
      entries.forEach((entry, i) => {
        if (!entry.name) throw new ApiError(400, `missing required field: name at proxy ${i + 1}`);
        if (!entry.upstream) throw new ApiError(400, `missing required field: upstream at proxy ${i + 1}`);
      });
    } catch (err) {
      return errorReply(err, { proxies: null });
    }
    const done: ProxyState[] = [];
    try {
      for (const entry of entries) {
        const name = entry.name!;
        const listen = entry.listen ?? "";
        const upstream = entry.upstream!;
        const existing = this.proxies.get(name);
        if (existing) {
          if (!(await this.differs(existing, listen, upstream))) {
            done.push(existing);
            continue;
          }
          // Stopped and replaced (toxics dropped); if the new one cannot start, the old one stays.
          await existing.stop();
        }
        const proxy = new ProxyState(name, listen, upstream);
        if (entry.enabled ?? true) await proxy.start();
        this.proxies.set(name, proxy);
        done.push(proxy);
      }
    } catch (err) {
      return errorReply(err, { proxies: done.map((p) => p.toJSON()) });
    }
    return Reply.json(201, { proxies: done });
  }

  private async reset(): Promise<Reply> {
    for (const proxy of this.proxies.values()) {
      await proxy.start();
      await proxy.removeAllToxics();
    }
    return new Reply(204, null);
  }

  private async createToxic(proxyName: string, body: unknown): Promise<Reply> {
    const proxy = this.proxy(proxyName);
    const obj = asObject(body, "toxics.ToxicWrapper");
    let name = optional<string>(obj, "name", "ToxicWrapper", "string") ?? "";
    const type = optional<string>(obj, "type", "ToxicWrapper", "string") ?? "";
    const stream = optional<string>(obj, "stream", "ToxicWrapper", "string") || "downstream";
    const toxicity = optional<number>(obj, "toxicity", "ToxicWrapper", "number") ?? 1;
    const attributes = field(obj, "attributes");
    const direction = stream.toLowerCase();
    if (direction !== "upstream" && direction !== "downstream") {
      throw new ApiError(400, "stream was invalid, can be either upstream or downstream");
    }
    if (name === "") name = `${type}_${stream}`;
    if (!isToxicType(type)) throw new ApiError(400, "invalid toxic type");
    if (proxy.findToxic(name)) throw new ApiError(409, "toxic already exists");
    const toxic: ToxicRecord = {
      name,
      type,
      stream,
      direction: direction as Direction,
      toxicity,
      attributes: decodeAttributes(() => mergeAttributes(type, undefined, attributes)),
    };
    await proxy.addToxic(toxic);
    return Reply.json(200, toxicJSON(toxic));
  }

  private async updateToxic(proxyName: string, toxicName: string, body: unknown): Promise<Reply> {
    const proxy = this.proxy(proxyName);
    const toxic = this.toxic(proxy, toxicName);
    const obj = asObject(body, "toxics.ToxicWrapper");
    const toxicity = optional<number>(obj, "toxicity", "ToxicWrapper", "number") ?? toxic.toxicity;
    const attributes = decodeAttributes(() =>
      mergeAttributes(toxic.type, toxic.attributes, field(obj, "attributes")),
    );
    await proxy.updateToxic(toxic, attributes, toxicity);
    return Reply.json(200, toxicJSON(toxic));
  }

  private async deleteToxic(proxyName: string, toxicName: string): Promise<Reply> {
    const proxy = this.proxy(proxyName);
    await proxy.removeToxic(this.toxic(proxy, toxicName));
    return new Reply(204, null);
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((p) => p.stop()));
    this.proxies.clear();
  }
}

function decodeAttributes(decode: () => Record<string, number>): Record<string, number> {
  try {
    return decode();
  } catch (err) {
    if (err instanceof AttributeError) throw badBody(err.message);
    throw err;
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(badBody("http: request body too large"));
        req.resume();
        return;
      }
      parts.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = {};
  if (reply.body !== null) {
    headers["Content-Type"] = reply.contentType;
    headers["Content-Length"] = String(Buffer.byteLength(reply.body));
  }
  res.writeHead(reply.status, headers);
  res.end(reply.body ?? undefined);
}

async function handle(api: ToxiproxyApi, req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.setHeader("X-Toxiproxy-Request-Id", randomBytes(10).toString("hex"));
  if ((req.headers["user-agent"] ?? "").startsWith("Mozilla/")) {
    send(res, new Reply(403, "User agent not allowed\n", "text/plain; charset=utf-8"));
    return;
  }
  let reply: Reply;
  try {
    const body = await readBody(req);
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const parts = path
      .slice(1)
      .split("/")
      .map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          return ""; // matches no route
        }
      });
    const method = req.method ?? "GET";
    reply = await api.serialize(() => api.route(method, parts, body));
  } catch (err) {
    reply = errorReply(err);
  }
  send(res, reply);
}

export async function startToxiproxy(options: ToxiproxyOptions = {}): Promise<ToxiproxyServer> {
  const host = options.host ?? "127.0.0.1";
  const api = new ToxiproxyApi();
  if (options.proxies !== undefined) {
    const reply = await api.populate(JSON.stringify(options.proxies));
    if (reply.status >= 300) {
      await api.close();
      throw new Error(`toxiproxy: could not create the configured proxies: ${reply.body?.trim()}`);
    }
  }
  const server = http.createServer((req, res) => {
    handle(api, req, res).catch(() => res.destroy());
  });
  server.requestTimeout = 15_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port: options.port ?? 8474 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await api.close();
    throw err;
  }
  const bound = server.address() as AddressInfo;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${joinHostPort(bound.address, bound.port)}`,
    host: bound.address,
    port: bound.port,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await api.serialize(() => api.close());
        await stopped;
      })();
      return closing;
    },
  };
}
