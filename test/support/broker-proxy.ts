/**
 * A TCP proxy in front of the main broker, for tests that need the bytes of a live connection to
 * stop: stall() stops reading what the connections open at that moment send (their socket buffers
 * fill up and nothing reaches the broker; what the broker sends still passes), resume() reads on.
 * Connections opened later pass freely.
 */
import { type AddressInfo, connect as connectTcp, createServer, type Socket } from "node:net";
import { AMQP_URL } from "./broker.js";

export interface BrokerProxy {
  port: number;
  /** AMQP_URL with the proxy's host and port. */
  url: string;
  stall(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startBrokerProxy(): Promise<BrokerProxy> {
  const target = new URL(AMQP_URL);
  const host = target.hostname || "127.0.0.1";
  const port = Number(target.port || 5672);
  const downstream = new Set<Socket>();
  const stalled = new Set<Socket>();
  const all = new Set<Socket>();
  const server = createServer((down) => {
    const up = connectTcp({ host, port });
    downstream.add(down);
    all.add(down).add(up);
    down.on("data", (d: Buffer) => up.write(d));
    up.on("data", (d: Buffer) => down.write(d));
    const end = () => {
      down.destroy();
      up.destroy();
      downstream.delete(down);
      stalled.delete(down);
      all.delete(down);
      all.delete(up);
    };
    for (const s of [down, up]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const listening = (server.address() as AddressInfo).port;
  const url = new URL(AMQP_URL);
  url.hostname = "127.0.0.1";
  url.port = String(listening);
  return {
    port: listening,
    url: url.toString(),
    stall() {
      for (const s of downstream) {
        s.pause();
        stalled.add(s);
      }
    },
    resume() {
      for (const s of stalled) s.resume();
      stalled.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of all) s.destroy();
        server.close(() => resolve());
      }),
  };
}
