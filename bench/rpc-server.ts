/**
 * The rpc workload's server, the same for every client: warren's low-level API in the
 * orchestrator's process (not the measured worker), one channel, prefetch 100, consuming the
 * request queues with manual acks and answering each request with its own body, to its replyTo
 * with its correlationId (default exchange), then acking it.
 */
import { Connection } from "../src/index.js";

export interface RpcBenchServer {
  close(): Promise<void>;
}

export async function startRpcServer(url: string, queues: string[]): Promise<RpcBenchServer> {
  const conn = await Connection.open({ url, connectionName: "warren-bench-rpc-server" });
  const ch = await conn.openChannel();
  await ch.basicQos({ prefetchCount: 100 });
  for (const queue of queues) {
    await ch.basicConsume({ queue }, (m) => {
      const replyTo = m.properties.replyTo;
      if (replyTo) {
        const props =
          m.properties.correlationId === undefined ? {} : { correlationId: m.properties.correlationId };
        ch.basicPublish("", replyTo, m.body, props);
      }
      ch.basicAck(m.deliveryTag);
    });
  }
  return {
    close: async () => {
      await conn.close();
    },
  };
}
