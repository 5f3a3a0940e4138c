import type { Connection, Message } from "../../src/index.js";

/** Consumes everything the queue holds now, in order (noAck), on a channel of its own. */
export async function drainQueue(conn: Connection, queue: string, timeoutMs = 30_000): Promise<Message[]> {
  const ch = await conn.openChannel();
  const count = (await ch.queueDeclare({ queue, passive: true })).messageCount;
  const got: Message[] = [];
  if (count > 0) {
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`draining ${count} messages from ${queue}: not done within ${timeoutMs} ms`)),
        timeoutMs,
      );
      ch.basicConsume({ queue, noAck: true }, (m) => {
        got.push(m);
        if (got.length === count) resolve();
      }).catch(reject);
    }).finally(() => clearTimeout(timer));
  }
  await ch.close();
  return got;
}

/** The message ids of `messages`, in order ("" for none). */
export function messageIds(messages: Message[]): string[] {
  return messages.map((m) => m.properties.messageId ?? "");
}
