/**
 * The Toxiproxy-compatible server (chaos/toxiproxy), driven only through the real
 * toxiproxy-node-client package, with plain TCP servers started here as upstreams (and the real
 * RabbitMQ for one test). Timing assertions use generous bounds; waits are on events, with
 * fixed-length windows only where the assertion is that nothing happens during them.
 */
import { once } from "node:events";
import net, { type AddressInfo, type Socket } from "node:net";
import { type ICreateToxicBody, ToxiproxyError, type Proxy as TpProxy } from "toxiproxy-node-client";
import { afterEach, describe, expect, it } from "vitest";
import { sleep } from "../support/async.js";
import { AMQP_URL, uniqueName } from "../support/broker.js";
import { useToxiproxy } from "../support/toxiproxy.js";
import { until } from "../support/wait.js";

const now = (): number => performance.now();

/** Bytes 0..250 repeating from `offset`, so that any loss or reordering shows. */
function pattern(length: number, offset = 0): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = (i + offset) % 251;
  return buf;
}

/** Resolves when `check()` holds, re-checking on every `notify`; rejects after `timeoutMs`. */
class Waiters {
  private readonly list = new Set<() => void>();

  notify(): void {
    for (const w of [...this.list]) w();
  }

  until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.list.delete(test);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const test = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.list.delete(test);
        resolve();
      };
      this.list.add(test);
    });
  }
}

const cleanups: Array<() => Promise<void> | void> = [];

/** A TCP client with everything it receives recorded. */
class Client {
  readonly chunks: Buffer[] = [];
  received = 0;
  closed = false;
  ended = false;
  error: NodeJS.ErrnoException | undefined;
  closedAt = 0;
  private readonly waiters = new Waiters();

  constructor(readonly socket: Socket) {
    socket.on("data", (data: Buffer) => {
      this.chunks.push(data);
      this.received += data.length;
      this.waiters.notify();
    });
    socket.on("end", () => {
      this.ended = true;
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.error = err;
    });
    socket.on("close", () => {
      this.closed = true;
      this.closedAt = now();
      this.waiters.notify();
    });
    cleanups.push(() => {
      socket.destroy();
    });
  }

  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new Client(socket));
      });
    });
  }

  data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  send(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Waits until `n` bytes have arrived (fails if the connection closes first). */
  bytes(n: number, timeoutMs?: number): Promise<void> {
    return this.waiters.until(
      () => {
        if (this.received < n && this.closed) throw new Error(`closed after ${this.received} of ${n} bytes`);
        return this.received >= n;
      },
      `${n} bytes (have ${this.received})`,
      timeoutMs,
    );
  }

  /** Waits until the connection is closed; resolves with the time it closed. */
  async close(timeoutMs?: number): Promise<number> {
    await this.waiters.until(() => this.closed, "the connection to close", timeoutMs);
    return this.closedAt;
  }

  /** Sends `data` and resolves with the time until it has all come back. */
  async roundTrip(data: Buffer | string): Promise<number> {
    const target = this.received + Buffer.byteLength(data);
    const start = now();
    this.send(data);
    await this.bytes(target);
    return now() - start;
  }
}

/** The error code of a connection attempt that fails (ECONNREFUSED ...). */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      reject(new Error(`port ${port} accepted a connection`));
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

/** A plain TCP server used as upstream. */
class Upstream {
  readonly chunks: Buffer[] = [];
  received = 0;
  accepted = 0;
  ended = 0;
  port = 0;
  private readonly waiters = new Waiters();
  private readonly sockets = new Set<Socket>();
  private readonly server: net.Server;

  private constructor(onConnection: (socket: Socket) => void) {
    this.server = net.createServer((socket) => {
      this.accepted++;
      this.sockets.add(socket);
      socket.on("error", () => {});
      socket.on("data", (data: Buffer) => {
        this.chunks.push(data);
        this.received += data.length;
        this.waiters.notify();
      });
      socket.on("end", () => {
        this.ended++;
        this.waiters.notify();
      });
      socket.on("close", () => this.sockets.delete(socket));
      onConnection(socket);
      this.waiters.notify();
    });
  }

  static async start(onConnection: (socket: Socket) => void = () => {}): Promise<Upstream> {
    const upstream = new Upstream(onConnection);
    await new Promise<void>((resolve) => upstream.server.listen(0, "127.0.0.1", resolve));
    upstream.port = (upstream.server.address() as AddressInfo).port;
    cleanups.push(() => upstream.close());
    return upstream;
  }

  /** Sends back everything it receives. */
  static echo(): Promise<Upstream> {
    return Upstream.start((socket) => socket.pipe(socket));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  until(check: () => boolean, what: string, timeoutMs?: number): Promise<void> {
    return this.waiters.until(check, what, timeoutMs);
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The HTTP status of a client call that must fail. */
async function failure(call: Promise<unknown>): Promise<number> {
  try {
    await call;
  } catch (err) {
    expect(err).toBeInstanceOf(ToxiproxyError);
    const match = /status code (\d+)/.exec((err as Error).message);
    if (match) return Number(match[1]);
    throw err;
  }
  throw new Error("the call succeeded");
}

function portOf(proxy: TpProxy): number {
  return Number(proxy.listen.slice(proxy.listen.lastIndexOf(":") + 1));
}

/** Body of a toxic with the server's defaults left out (the client's type wants every field). */
function toxicBody<T>(body: Partial<ICreateToxicBody<T>>): ICreateToxicBody<T> {
  return body as ICreateToxicBody<T>;
}

const tp = useToxiproxy();

afterEach(async () => {
  for (const name of Object.keys(await tp.toxiproxy.getAll())) {
    await (await tp.toxiproxy.get(name)).remove();
  }
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A proxy on an ephemeral port of 127.0.0.1 in front of `upstream`. */
function proxyTo(upstream: string, name = uniqueName("proxy")): Promise<TpProxy> {
  return tp.toxiproxy.createProxy({ name, listen: "127.0.0.1:0", upstream });
}

async function listToxics(proxy: TpProxy): Promise<Array<{ name: string; stream: string }>> {
  const res = await tp.toxiproxy
    .getApi()
    .get<Array<{ name: string; stream: string }>>(`${proxy.getPath()}/toxics`);
  return res.data;
}

describe("toxiproxy HTTP API (through toxiproxy-node-client)", () => {
  it("GET /version answers a JSON version", async () => {
    const text = await tp.toxiproxy.getVersion();
    const body = JSON.parse(text) as { version: unknown };
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("creates, gets, lists and deletes proxies; 409 on a duplicate, 404 when missing, 400 when incomplete", async () => {
    const echo = await Upstream.echo();
    const name = uniqueName("crud");
    const proxy = await proxyTo(echo.address, name);
    expect(proxy.name).toBe(name);
    expect(proxy.upstream).toBe(echo.address);
    expect(proxy.enabled).toBe(true);
    expect(proxy.listen).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(portOf(proxy)).toBeGreaterThan(0);

    const client = await Client.connect(portOf(proxy));
    await client.roundTrip("hello through the proxy");
    expect(client.data().toString()).toBe("hello through the proxy");

    expect(await failure(proxyTo(echo.address, name))).toBe(409);
    expect(
      await failure(tp.toxiproxy.createProxy({ name: uniqueName("x"), listen: "127.0.0.1:0" } as never)),
    ).toBe(400);
    expect(
      await failure(tp.toxiproxy.createProxy({ listen: "127.0.0.1:0", upstream: echo.address } as never)),
    ).toBe(400);

    const got = await tp.toxiproxy.get(name);
    expect(got.toJson()).toEqual(proxy.toJson());
    const other = await proxyTo(echo.address);
    const all = await tp.toxiproxy.getAll();
    expect(Object.keys(all).sort()).toEqual([name, other.name].sort());
    expect(all[name]?.listen).toBe(proxy.listen);

    await proxy.remove();
    expect(await failure(tp.toxiproxy.get(name))).toBe(404);
    expect(await failure(proxy.remove())).toBe(404);
    await client.close();
    expect(await connectError(portOf(proxy))).toBe("ECONNREFUSED");
    expect(Object.keys(await tp.toxiproxy.getAll())).toEqual([other.name]);
  });

  it("disabling a proxy closes its connections and stops listening; enabling listens on the same address again", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    const client = await Client.connect(portOf(proxy));
    await client.roundTrip("before");

    const disabled = await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
    expect(disabled.enabled).toBe(false);
    await client.close();
    expect(await connectError(portOf(proxy))).toBe("ECONNREFUSED");
    expect((await tp.toxiproxy.get(proxy.name)).enabled).toBe(false);

    const enabled = await proxy.update({ enabled: true, listen: proxy.listen, upstream: proxy.upstream });
    expect(enabled.enabled).toBe(true);
    expect(enabled.listen).toBe(proxy.listen);
    const again = await Client.connect(portOf(proxy));
    await again.roundTrip("after");
    expect(again.data().toString()).toBe("after");
  });

  it("changing the upstream restarts the proxy towards the new upstream", async () => {
    const first = await Upstream.echo();
    const second = await Upstream.start();
    const proxy = await proxyTo(first.address);
    const client = await Client.connect(portOf(proxy));
    await client.roundTrip("to the first");

    const moved = await proxy.update({ enabled: true, listen: proxy.listen, upstream: second.address });
    expect(moved.upstream).toBe(second.address);
    expect(moved.enabled).toBe(true);
    expect(moved.listen).toBe(proxy.listen);
    await client.close(); // connections of the old configuration are closed

    const next = await Client.connect(portOf(moved));
    next.send("to the second");
    await second.until(() => second.received >= 13, "the second upstream to receive");
    expect(second.data().toString()).toBe("to the second");
    expect(first.accepted).toBe(1);
  });

  it("populate creates proxies, keeps unchanged ones with their toxics, replaces changed ones, stops at the first error", async () => {
    const echo = await Upstream.echo();
    const other = await Upstream.echo();
    const [a, b] = [uniqueName("pop-a"), uniqueName("pop-b")];
    const created = await tp.toxiproxy.populate([
      { name: a, listen: "127.0.0.1:0", upstream: echo.address },
      { name: b, listen: "127.0.0.1:0", upstream: echo.address, enabled: false },
    ]);
    expect(Object.keys(created).sort()).toEqual([a, b].sort());
    const proxyA = created[a]!;
    expect(proxyA.enabled).toBe(true);
    expect(proxyA.listen).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(created[b]?.enabled).toBe(false);
    expect(created[b]?.listen).toBe("127.0.0.1:0");
    await proxyA.addToxic(toxicBody({ type: "latency", attributes: { latency: 1, jitter: 0 } }));

    // The same listen (as bound) and upstream: left untouched, toxic kept.
    const same = await tp.toxiproxy.populate([{ name: a, listen: proxyA.listen, upstream: echo.address }]);
    expect(same[a]?.listen).toBe(proxyA.listen);
    expect((await proxyA.getToxic("latency_downstream")).name).toBe("latency_downstream");

    // A different upstream: replaced by a fresh proxy without toxics.
    const replaced = await tp.toxiproxy.populate([
      { name: a, listen: proxyA.listen, upstream: other.address },
    ]);
    expect(replaced[a]?.upstream).toBe(other.address);
    expect(await failure(proxyA.getToxic("latency_downstream"))).toBe(404);
    const client = await Client.connect(portOf(replaced[a]!));
    await client.roundTrip("replaced");
    expect(other.accepted).toBe(1);

    expect(await failure(tp.toxiproxy.populate([{ upstream: echo.address } as never]))).toBe(400);
    const c = uniqueName("pop-c");
    expect(
      await failure(
        tp.toxiproxy.populate([
          { name: c, listen: "127.0.0.1:0", upstream: echo.address },
          { name: uniqueName("pop-d"), listen: proxyA.listen, upstream: echo.address }, // port in use
        ]),
      ),
    ).toBe(500);
    expect((await tp.toxiproxy.get(c)).enabled).toBe(true); // entries before the failure stay applied
    expect(await tp.toxiproxy.populate([])).toEqual({});
  });

  it("reset re-enables every proxy and removes every toxic, releasing held data", async () => {
    const echo = await Upstream.echo();
    const off = await proxyTo(echo.address);
    await off.update({ enabled: false, listen: off.listen, upstream: off.upstream });
    const stalled = await proxyTo(echo.address);
    const client = await Client.connect(portOf(stalled));
    await stalled.addToxic(toxicBody({ type: "bandwidth", attributes: { rate: 0 } }));
    await stalled.addToxic(
      toxicBody({ type: "latency", stream: "upstream", attributes: { latency: 1, jitter: 0 } }),
    );
    expect(await listToxics(stalled)).toHaveLength(2);
    client.send(pattern(5000));
    await echo.until(() => echo.received >= 5000, "the upstream to receive");
    expect(client.received).toBe(0);

    await tp.toxiproxy.reset();
    expect((await tp.toxiproxy.get(off.name)).enabled).toBe(true);
    expect(await listToxics(stalled)).toEqual([]);
    await client.bytes(5000);
    expect(client.data().equals(pattern(5000))).toBe(true);
    const viaReenabled = await Client.connect(portOf(off));
    await viaReenabled.roundTrip("back");
  });

  it("toxics: defaults, get, list, partial update, remove; 404, 409 and 400 errors", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    const latency = await proxy.addToxic(
      toxicBody({ type: "latency", attributes: { latency: 1000, jitter: 100 } }),
    );
    expect(latency.toJson()).toEqual({
      name: "latency_downstream",
      type: "latency",
      stream: "downstream",
      toxicity: 1,
      attributes: { latency: 1000, jitter: 100 },
    });
    expect((await proxy.getToxic("latency_downstream")).toJson()).toEqual(latency.toJson());

    const updated = await latency.update({ attributes: { latency: 12345 } } as never);
    expect(updated.attributes).toEqual({ latency: 12345, jitter: 100 });
    const lessToxic = await updated.update({ toxicity: 0.5 } as never);
    expect(lessToxic.toxicity).toBe(0.5);
    expect(lessToxic.attributes).toEqual({ latency: 12345, jitter: 100 });

    const up = await proxy.addToxic(
      toxicBody({
        name: "up",
        type: "slow_close",
        stream: "upstream",
        toxicity: 0.25,
        attributes: { delay: 5 },
      }),
    );
    expect(up.toJson()).toEqual({
      name: "up",
      type: "slow_close",
      stream: "upstream",
      toxicity: 0.25,
      attributes: { delay: 5 },
    });
    // Upstream toxics are listed first, then downstream ones.
    expect((await listToxics(proxy)).map((t) => t.name)).toEqual(["up", "latency_downstream"]);

    // Names are unique across both streams.
    expect(
      await failure(
        proxy.addToxic(
          toxicBody({ name: "latency_downstream", type: "latency", stream: "upstream", attributes: {} }),
        ),
      ),
    ).toBe(409);
    expect(await failure(proxy.addToxic(toxicBody({ type: "latency", attributes: {} })))).toBe(409);
    expect(await failure(proxy.addToxic(toxicBody({ type: "down", attributes: {} })))).toBe(400);
    expect(await failure(proxy.addToxic(toxicBody({ type: "latency", stream: "sideways" as never })))).toBe(
      400,
    );
    expect(
      await failure(
        proxy.addToxic(toxicBody({ name: "frac", type: "latency", attributes: { latency: 1.5 } })),
      ),
    ).toBe(400);
    expect(
      await failure(proxy.addToxic(toxicBody({ name: "neg", type: "bandwidth", attributes: { rate: -1 } }))),
    ).toBe(400);
    expect(await failure(proxy.getToxic("nope"))).toBe(404);
    expect(
      await failure(
        tp.toxiproxy.getApi().post(`${proxy.getPath()}/toxics/nope`, { attributes: { latency: 1 } }),
      ),
    ).toBe(404);

    await latency.remove();
    expect(await failure(proxy.getToxic("latency_downstream"))).toBe(404);
    expect(await failure(latency.remove())).toBe(404);
    expect((await listToxics(proxy)).map((t) => t.name)).toEqual(["up"]);

    // Every type echoes its attributes.
    const types: Array<[string, Record<string, number>]> = [
      ["latency", { latency: 10, jitter: 2 }],
      ["bandwidth", { rate: 1000 }],
      ["slow_close", { delay: 10 }],
      ["timeout", { timeout: 10 }],
      ["slicer", { average_size: 64, size_variation: 8, delay: 10 }],
      ["reset_peer", { timeout: 10 }],
      ["limit_data", { bytes: 100 }],
    ];
    for (const [type, attributes] of types) {
      const toxic = await proxy.addToxic(toxicBody({ name: `t-${type}`, type: type as never, attributes }));
      expect(toxic.type).toBe(type);
      expect(toxic.attributes).toEqual(attributes);
    }

    await proxy.remove();
    expect(await failure(proxy.addToxic(toxicBody({ type: "latency", attributes: {} })))).toBe(404);
    expect(await failure(proxy.getToxic("up"))).toBe(404);
  });
});

describe("toxics on the data path", () => {
  it("latency delays each direction by its amount; jitter varies it without reordering", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    const down = await proxy.addToxic(
      toxicBody({ type: "latency", attributes: { latency: 300, jitter: 0 } }),
    );
    const client = await Client.connect(portOf(proxy));
    const rtt = await client.roundTrip("x");
    // Lower bounds from the configured latency; upper ones 5× it, for a loaded machine.
    expect(rtt).toBeGreaterThanOrEqual(295);
    expect(rtt).toBeLessThan(1_500);

    await proxy.addToxic(
      toxicBody({ type: "latency", stream: "upstream", attributes: { latency: 200, jitter: 0 } }),
    );
    const both = await client.roundTrip("y");
    expect(both).toBeGreaterThanOrEqual(495);
    expect(both).toBeLessThan(2_500);

    await down.update({ attributes: { latency: 0 } } as never);
    await (await proxy.getToxic("latency_upstream")).update({
      attributes: { latency: 100, jitter: 90 },
    } as never);
    const samples: number[] = [];
    for (let i = 0; i < 8; i++) samples.push(await client.roundTrip(`j${i}`));
    for (const s of samples) {
      expect(s).toBeGreaterThanOrEqual(9);
      expect(s).toBeLessThan(1200);
    }
    expect(Math.max(...samples) - Math.min(...samples)).toBeGreaterThan(5);

    // Many writes in a burst come back whole and in order.
    const start = client.received;
    const parts = Array.from({ length: 40 }, (_, i) => pattern(100 + i, i));
    for (const part of parts) client.send(part);
    const total = parts.reduce((n, p) => n + p.length, 0);
    await client.bytes(start + total);
    expect(client.data().subarray(start).equals(Buffer.concat(parts))).toBe(true);
  });

  it("removing a latency toxic lets the data it holds through at once", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    const client = await Client.connect(portOf(proxy));
    const toxic = await proxy.addToxic(
      toxicBody({ type: "latency", attributes: { latency: 20_000, jitter: 0 } }),
    );
    client.send("held");
    await echo.until(() => echo.received >= 4, "the upstream to receive");
    await sleep(200); // time is the point: a window in which nothing may come back
    expect(client.received).toBe(0);
    const removedAt = now();
    await toxic.remove();
    await client.bytes(4);
    // At once, where the toxic would have held it 20 s.
    expect(now() - removedAt).toBeLessThan(5_000);
    expect(client.data().toString()).toBe("held");
  });

  it("bandwidth limits the rate to about `rate` KB/s", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    await proxy.addToxic(toxicBody({ type: "bandwidth", attributes: { rate: 200 } }));
    const client = await Client.connect(portOf(proxy));
    const size = 200_000; // 1 s at 200 KB/s
    const elapsed = await client.roundTrip(pattern(size));
    // About 1 s: not much less (the first read passes at once), and 4× more only on a loaded machine.
    expect(elapsed).toBeGreaterThan(700);
    expect(elapsed).toBeLessThan(4_000);
    expect(client.data().equals(pattern(size))).toBe(true);

    // Upstream, at a rate above the size of a read (so no 100 ms pieces).
    const sink = await Upstream.start();
    const up = await proxyTo(sink.address);
    await up.addToxic(toxicBody({ type: "bandwidth", stream: "upstream", attributes: { rate: 1000 } }));
    const writer = await Client.connect(portOf(up));
    const big = pattern(1_000_000); // 1 s at 1000 KB/s
    const start = now();
    writer.send(big);
    await sink.until(() => sink.received >= big.length, "the upstream to receive everything");
    const upElapsed = now() - start;
    expect(upElapsed).toBeGreaterThan(700);
    expect(upElapsed).toBeLessThan(4_000);
    expect(sink.data().equals(big)).toBe(true);
  });

  it("bandwidth 0 stalls a live connection until removed; then everything arrives in order", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    const client = await Client.connect(portOf(proxy));
    await client.roundTrip("warm");
    const stall = await proxy.addToxic(toxicBody({ type: "bandwidth", attributes: { rate: 0 } }));
    const data = pattern(300_000);
    client.send(data);
    await echo.until(() => echo.received >= 4 + data.length, "the upstream to receive everything");
    await sleep(300); // time is the point: a window in which nothing may come back
    expect(client.received).toBe(4);
    await stall.remove();
    await client.bytes(4 + data.length);
    expect(client.data().subarray(4).equals(data)).toBe(true);
  });

  it("a stalled upstream pushes back on the sender (no unbounded buffering), and nothing is lost", async () => {
    const sink = await Upstream.start();
    const proxy = await proxyTo(sink.address);
    const stall = await proxy.addToxic(
      toxicBody({ type: "bandwidth", stream: "upstream", attributes: { rate: 0 } }),
    );
    const client = await Client.connect(portOf(proxy));
    const size = 64 * 1024 * 1024;
    const data = pattern(size);
    let sent = 0; // bytes the client socket took (it waits for 'drain' after each 64 KB)
    let waiting = false; // waiting for 'drain'
    const writing = (async () => {
      while (sent < size) {
        const piece = data.subarray(sent, sent + 65536);
        sent += piece.length;
        if (!client.socket.write(piece)) {
          waiting = true;
          await once(client.socket, "drain");
          waiting = false;
        }
      }
    })();
    // The sender fills the buffers on its way until it waits for 'drain' and makes no progress
    // for 200 ms (however long filling them takes on this machine).
    await until(async () => {
      const before = sent;
      await sleep(200); // the window the sender must stay still in
      return waiting && sent === before;
    }, "the sender to stall");
    const early = sent;
    await sleep(400); // time is the point: a window in which the stalled sender may not progress
    expect(sink.received).toBe(0);
    // Stalled: the proxy (with the kernel buffers of both sockets) holds a bounded amount, and the
    // sender makes no progress.
    expect(sent).toBe(early);
    expect(waiting).toBe(true);
    expect(sent).toBeLessThan(24 * 1024 * 1024);
    await stall.remove();
    await sink.until(() => sink.received >= size, "the upstream to receive everything", 20_000);
    expect(sink.received).toBe(size);
    expect(sink.data().equals(data)).toBe(true);
    await writing;
  });

  it("slow_close delays the close but not the data", async () => {
    const greeter = await Upstream.start((socket) => socket.end("hello"));
    const plain = await proxyTo(greeter.address);
    const control = await Client.connect(portOf(plain));
    const controlStart = now();
    await control.close();
    const controlTime = control.closedAt - controlStart;

    const slow = await proxyTo(greeter.address);
    await slow.addToxic(toxicBody({ type: "slow_close", attributes: { delay: 600 } }));
    const start = now();
    const client = await Client.connect(portOf(slow));
    await client.bytes(5);
    const dataTime = now() - start;
    await client.close();
    const closeTime = client.closedAt - start;
    expect(client.data().toString()).toBe("hello");
    expect(client.error).toBeUndefined();
    expect(closeTime).toBeGreaterThanOrEqual(590);
    expect(closeTime).toBeLessThan(3_000);
    expect(dataTime).toBeLessThan(closeTime - 300);
    expect(controlTime).toBeLessThan(closeTime - 300);
  });

  it("timeout drops the data and closes the connection once idle for `timeout` ms", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    await proxy.addToxic(toxicBody({ type: "timeout", attributes: { timeout: 400 } }));
    const client = await Client.connect(portOf(proxy));
    client.send("dropped");
    const sentAt = now();
    await echo.until(() => echo.received >= 7, "the upstream to receive");
    const closedAt = await client.close();
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(390);
    expect(closedAt - sentAt).toBeLessThan(3000);
    expect(client.received).toBe(0);
  });

  it("timeout 0 is a black hole that holds the connection open until removed, which closes it", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    const client = await Client.connect(portOf(proxy));
    const hole = await proxy.addToxic(toxicBody({ type: "timeout", attributes: { timeout: 0 } }));
    client.send("into the void");
    await echo.until(() => echo.received >= 13, "the upstream to receive");
    await sleep(500); // time is the point: a window in which nothing may come back, nor close
    expect(client.received).toBe(0);
    expect(client.closed).toBe(false);
    await hole.remove();
    await client.close();
    expect(client.received).toBe(0);
  });

  it("reset_peer resets the connection (ECONNRESET) `timeout` ms after the next data", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    await proxy.addToxic(toxicBody({ type: "reset_peer", attributes: { timeout: 300 } }));
    const client = await Client.connect(portOf(proxy));
    await sleep(100); // time is the point: no traffic, so no reset in this window
    expect(client.closed).toBe(false);
    const sentAt = now();
    client.send("trigger");
    const closedAt = await client.close();
    expect(client.error?.code).toBe("ECONNRESET");
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(295);
    expect(closedAt - sentAt).toBeLessThan(3000);
    expect(client.received).toBe(0);

    // Added to a live connection (accepted while the proxy had no reset_peer), upstream, no delay.
    await (await proxy.getToxic("reset_peer_downstream")).remove();
    const live = await Client.connect(portOf(proxy));
    await live.roundTrip("alive");
    await proxy.addToxic(toxicBody({ type: "reset_peer", stream: "upstream", attributes: { timeout: 0 } }));
    live.send("bye");
    await live.close();
    expect(live.error?.code).toBe("ECONNRESET");
  });

  it("slicer cuts the data into small delayed slices, in order", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    await proxy.addToxic(
      toxicBody({ type: "slicer", attributes: { average_size: 100, size_variation: 20, delay: 20_000 } }),
    );
    const client = await Client.connect(portOf(proxy));
    const data = pattern(1600);
    const elapsed = await client.roundTrip(data);
    expect(client.data().equals(data)).toBe(true);
    // 1600 bytes become at least 14 slices of at most 120 bytes, each after a 20 ms pause.
    expect(elapsed).toBeGreaterThanOrEqual(14 * 20 - 5);
    const sizes = client.chunks.map((c) => c.length);
    expect(sizes.length).toBeGreaterThanOrEqual(8);
    const small = sizes.filter((s) => s <= 120).length;
    expect(small / sizes.length).toBeGreaterThanOrEqual(0.75);
  });

  it("limit_data closes the connection after exactly `bytes` bytes, in either direction", async () => {
    const echo = await Upstream.echo();
    const down = await proxyTo(echo.address);
    await down.addToxic(toxicBody({ type: "limit_data", attributes: { bytes: 1000 } }));
    const client = await Client.connect(portOf(down));
    const data = pattern(3000);
    client.send(data);
    await client.close();
    expect(client.error).toBeUndefined();
    expect(client.received).toBe(1000);
    expect(client.data().equals(data.subarray(0, 1000))).toBe(true);

    const sink = await Upstream.start();
    const up = await proxyTo(sink.address);
    const limit = await up.addToxic(
      toxicBody({ type: "limit_data", stream: "upstream", attributes: { bytes: 500 } }),
    );
    const writer = await Client.connect(portOf(up));
    writer.send(pattern(200));
    await sink.until(() => sink.received >= 200, "the first 200 bytes");
    // The count survives an update: 200 already passed, so 100 more reach the new limit of 300.
    await limit.update({ attributes: { bytes: 300 } } as never);
    writer.send(pattern(1000, 200));
    await sink.until(() => sink.ended === 1, "the upstream connection to end");
    expect(sink.received).toBe(300);
    expect(sink.data().equals(pattern(300))).toBe(true);
    await writer.close();
  });

  it("toxicity 0 never applies the toxic", async () => {
    const echo = await Upstream.echo();
    const proxy = await proxyTo(echo.address);
    await proxy.addToxic(
      toxicBody({ type: "latency", toxicity: 0, attributes: { latency: 20_000, jitter: 0 } }),
    );
    await proxy.addToxic(
      toxicBody({ type: "timeout", stream: "upstream", toxicity: 0, attributes: { timeout: 0 } }),
    );
    for (let i = 0; i < 6; i++) {
      const client = await Client.connect(portOf(proxy));
      expect(await client.roundTrip(`ping ${i}`)).toBeLessThan(5_000); // the toxic would take 20 s
      client.socket.destroy();
    }
  });

  it("a connection whose upstream refuses is accepted and closed at once", async () => {
    const gone = await Upstream.start();
    await gone.close();
    const proxy = await proxyTo(gone.address);
    const client = await Client.connect(portOf(proxy));
    await client.close(5000);
    expect(client.received).toBe(0);
  });

  it("proxies AMQP to the real RabbitMQ: the protocol header gets connection.start back", async () => {
    const broker = new URL(AMQP_URL);
    const proxy = await proxyTo(`${broker.hostname}:${broker.port || "5672"}`);
    await proxy.addToxic(toxicBody({ type: "latency", attributes: { latency: 150, jitter: 0 } }));
    const client = await Client.connect(portOf(proxy));
    const rtt = await (async () => {
      const start = now();
      client.send(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])); // "AMQP" 0-9-1
      await client.bytes(11);
      return now() - start;
    })();
    expect(rtt).toBeGreaterThanOrEqual(145);
    const frame = client.data();
    expect(frame.readUInt8(0)).toBe(1); // method frame
    expect(frame.readUInt16BE(1)).toBe(0); // channel 0
    expect(frame.readUInt16BE(7)).toBe(10); // class connection
    expect(frame.readUInt16BE(9)).toBe(10); // method start
  });
});
