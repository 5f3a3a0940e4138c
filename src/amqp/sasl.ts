/** The SASL responses of connection.start-ok (AMQP 0-9-1 §1.4.2.2; RabbitMQ's mechanisms). */
import { encodeTable } from "../protocol/table.js";
import type { AuthMechanism } from "./url.js";

export function saslResponse(mechanism: AuthMechanism, username: string, password: string): Buffer {
  switch (mechanism) {
    case "PLAIN":
      return Buffer.from(`\0${username}\0${password}`, "utf8");
    case "AMQPLAIN": {
      const b = Buffer.alloc(
        4 + 2 * (1 + 5 + 1 + 4) + Buffer.byteLength(username) + Buffer.byteLength(password) + 16,
      );
      const end = encodeTable(b, 0, { LOGIN: username, PASSWORD: password });
      return b.subarray(4, end); // AMQPLAIN is a table without its size prefix
    }
    case "EXTERNAL":
      return Buffer.alloc(0);
  }
}
