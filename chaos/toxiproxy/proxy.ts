/**
 * A proxy: a listening socket that forwards each accepted connection to its upstream, with the
 * toxics of each direction applied to every connection (live ones included).
 */
import { lookup } from "node:dns/promises";
import net, { type AddressInfo, type Server, type Socket } from "node:net";
import { Connection, type ConnectionOwner, type ToxicSpec } from "./link.js";
import type { Attributes, Direction, ToxicType } from "./toxics.js";

/** An error answered with its own HTTP status and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface HostPort {
  host: string;
  port: number;
}

/** Splits `host:port` (`[v6]:port` for IPv6) the way Go's net.SplitHostPort does. */
export function splitHostPort(address: string): HostPort {
  let host: string;
  let portText: string;
  if (address.startsWith("[")) {
    const close = address.indexOf("]");
    if (close < 0) throw new ApiError(500, `address ${address}: missing ']' in address`);
    host = address.slice(1, close);
    const rest = address.slice(close + 1);
    if (!rest.startsWith(":")) throw new ApiError(500, `address ${address}: missing port in address`);
    portText = rest.slice(1);
  } else {
    const colon = address.lastIndexOf(":");
    if (colon < 0) throw new ApiError(500, `address ${address}: missing port in address`);
    host = address.slice(0, colon);
    if (host.includes(":")) throw new ApiError(500, `address ${address}: too many colons in address`);
    portText = address.slice(colon + 1);
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 0 && port <= 65535)) throw new ApiError(500, `address ${address}: invalid port`);
  return { host, port };
}

export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Resolves the host of `address` to an IP (IPv4 first), giving `ip:port`. */
export async function resolveAddress(address: string): Promise<string> {
  const { host, port } = splitHostPort(address);
  if (host === "" || net.isIP(host) !== 0) return joinHostPort(host, port);
  try {
    const found = await lookup(host, { verbatim: false });
    return joinHostPort(found.address, port);
  } catch {
    throw new ApiError(500, `listen tcp: lookup ${host}: no such host`);
  }
}

const BIND_ERRORS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EACCES: "permission denied",
  EADDRNOTAVAIL: "cannot assign requested address",
};

export interface ToxicRecord extends ToxicSpec {
  /** The stream as the client gave it (echoed as is). */
  stream: string;
}

export class ProxyState implements ConnectionOwner {
  enabled = false;
  private server: Server | null = null;
  readonly connections = new Set<Connection>();
  readonly upstreamToxics: ToxicRecord[] = [];
  readonly downstreamToxics: ToxicRecord[] = [];

  constructor(
    readonly name: string,
    public listen: string,
    public upstream: string,
  ) {}

  toxics(direction: Direction): readonly ToxicRecord[] {
    return direction === "upstream" ? this.upstreamToxics : this.downstreamToxics;
  }

  allToxics(): ToxicRecord[] {
    return [...this.upstreamToxics, ...this.downstreamToxics];
  }

  findToxic(name: string): ToxicRecord | undefined {
    return this.allToxics().find((t) => t.name === name);
  }

  forget(conn: Connection): void {
    this.connections.delete(conn);
  }

  /** Binds the listen address; afterwards `listen` is the bound `ip:port`. No-op when running. */
  async start(): Promise<void> {
    if (this.enabled) return;
    const address = await resolveAddress(this.listen);
    const { host, port } = splitHostPort(address);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) =>
      this.accept(socket),
    );
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const reason = (err.code && BIND_ERRORS[err.code]) ?? err.message;
        reject(new ApiError(500, `listen tcp ${address}: bind: ${reason}`));
      };
      server.once("error", onError);
      server.listen({ host: host === "" ? undefined : host, port, exclusive: true }, () => {
        server.off("error", onError);
        resolve();
      });
    });
    server.on("error", () => {});
    const bound = server.address() as AddressInfo;
    this.listen = joinHostPort(bound.address, bound.port);
    this.server = server;
    this.enabled = true;
  }

  /** Closes the listener and every connection. */
  async stop(): Promise<void> {
    if (!this.enabled) return;
    this.enabled = false;
    const server = this.server;
    this.server = null;
    const closed = new Promise<void>((resolve) => server?.close(() => resolve()) ?? resolve());
    for (const conn of [...this.connections]) conn.destroy();
    await closed;
  }

  private accept(client: Socket): void {
    const conn = new Connection(
      this,
      client,
      this.allToxics().some((t) => t.type === "reset_peer"),
    );
    this.connections.add(conn);
    let target: HostPort;
    try {
      target = splitHostPort(this.upstream);
    } catch {
      conn.destroy();
      return;
    }
    const server = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    server.on("error", () => {});
    let connected = false;
    server.once("connect", () => {
      connected = true;
      conn.begin(server);
    });
    server.once("close", () => {
      if (!connected) conn.destroy();
    });
    client.once("close", () => {
      if (!connected) server.destroy();
    });
  }

  async addToxic(toxic: ToxicRecord): Promise<void> {
    (toxic.direction === "upstream" ? this.upstreamToxics : this.downstreamToxics).push(toxic);
    await Promise.all([...this.connections].map((c) => c.link(toxic.direction)?.addToxic(toxic)));
  }

  async updateToxic(toxic: ToxicRecord, attributes: Attributes, toxicity: number): Promise<void> {
    toxic.attributes = attributes;
    toxic.toxicity = toxicity;
    await Promise.all([...this.connections].map((c) => c.link(toxic.direction)?.updateToxic(toxic.name)));
  }

  async removeToxic(toxic: ToxicRecord): Promise<void> {
    const list = toxic.direction === "upstream" ? this.upstreamToxics : this.downstreamToxics;
    const index = list.indexOf(toxic);
    if (index >= 0) list.splice(index, 1);
    await Promise.all([...this.connections].map((c) => c.link(toxic.direction)?.removeToxic(toxic.name)));
  }

  async removeAllToxics(): Promise<void> {
    for (const toxic of this.allToxics().reverse()) await this.removeToxic(toxic);
  }

  toJSON(): object {
    return {
      name: this.name,
      listen: this.listen,
      upstream: this.upstream,
      enabled: this.enabled,
      toxics: this.allToxics().map(toxicJSON),
    };
  }
}

export function toxicJSON(toxic: ToxicRecord): object {
  return {
    attributes: { ...toxic.attributes },
    name: toxic.name,
    type: toxic.type,
    stream: toxic.stream,
    toxicity: toxic.toxicity,
  };
}

export type { ToxicType };
