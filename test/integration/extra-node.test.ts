import { existsSync } from "node:fs";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { extraNodesSupported, startTlsNode, type TlsNode, tcpAnswers } from "../support/extra-node.js";

const PROTOCOL_HEADER = Buffer.from("AMQP\x00\x00\x09\x01", "latin1");

/** Collects bytes from a socket until `enough(buffer)` holds; rejects on close or after 10 s. */
function readUntil(socket: TLSSocket, enough: (b: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`timed out; got ${buf.length} bytes`)), 10_000);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (enough(buf)) finish();
    };
    const onEnd = () => finish(new Error(`connection closed after ${buf.length} bytes`));
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onEnd);
      if (error) reject(error);
      else resolve(buf);
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("error", finish);
  });
}

/** One whole frame is in b: 7-byte header, payload, frame-end. */
const wholeFrame = (b: Buffer) => b.length >= 7 && b.length >= 8 + b.readUInt32BE(3);

function frame(type: number, channel: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt8(type, 0);
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([0xce])]);
}

function shortstr(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([Buffer.from([b.length]), b]);
}

/** connection.start-ok with an empty client-properties table. */
function startOk(mechanism: string, response: Buffer): Buffer {
  const classMethod = Buffer.alloc(4);
  classMethod.writeUInt16BE(10, 0);
  classMethod.writeUInt16BE(11, 2);
  const emptyTable = Buffer.alloc(4);
  const responseLen = Buffer.alloc(4);
  responseLen.writeUInt32BE(response.length, 0);
  return frame(
    1,
    0,
    Buffer.concat([classMethod, emptyTable, shortstr(mechanism), responseLen, response, shortstr("en_US")]),
  );
}

function connectTls(node: TlsNode, withClientCert: boolean): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port: node.tlsPort,
      servername: "localhost",
      ca: node.certs.ca.cert,
      ...(withClientCert ? { cert: node.certs.client.cert, key: node.certs.client.key } : {}),
    });
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", reject);
  });
}

describe.skipIf(!extraNodesSupported())("extra RabbitMQ node with TLS", { timeout: 60_000 }, () => {
  let node: TlsNode;

  beforeAll(async () => {
    node = await startTlsNode();
    console.info(
      `${node.nodeName} started in ${node.startMs} ms (TLS ${node.tlsPort}, AMQP ${node.amqpPort})`,
    );
  });

  afterAll(async () => {
    await node?.stop();
  }, 60_000);

  it("answers the AMQP 0-9-1 header over TLS with connection.start", async () => {
    const socket = await connectTls(node, false);
    try {
      expect(socket.authorized).toBe(true);
      socket.write(PROTOCOL_HEADER);
      const bytes = await readUntil(socket, wholeFrame);
      expect(bytes.readUInt8(0)).toBe(1); // method frame
      expect(bytes.readUInt16BE(1)).toBe(0); // channel 0
      expect(bytes.readUInt16BE(7)).toBe(10); // class connection
      expect(bytes.readUInt16BE(9)).toBe(10); // method start
      expect(bytes.readUInt8(11)).toBe(0); // version-major
      expect(bytes.readUInt8(12)).toBe(9); // version-minor
      const mechanisms = bytes.toString("latin1");
      expect(mechanisms).toContain("PLAIN");
      if (node.external) expect(mechanisms).toContain("EXTERNAL");
    } finally {
      socket.destroy();
    }
  });

  it("logs in with SASL EXTERNAL using the client certificate", async ({ skip }) => {
    if (!node.external) skip("rabbitmq_auth_mechanism_ssl is not installed");
    const socket = await connectTls(node, true);
    try {
      socket.write(PROTOCOL_HEADER);
      const start = await readUntil(socket, wholeFrame);
      socket.write(startOk("EXTERNAL", Buffer.alloc(0)));
      const rest = start.subarray(8 + start.readUInt32BE(3));
      const reply = rest.length > 0 ? rest : await readUntil(socket, wholeFrame);
      // connection.tune (10, 30) means the broker accepted the login.
      expect([reply.readUInt16BE(7), reply.readUInt16BE(9)]).toEqual([10, 30]);
    } finally {
      socket.destroy();
    }
  });

  it("answers a wrong protocol header on the plain port with its own header", async () => {
    const { createConnection } = await import("node:net");
    const socket = createConnection({ host: "127.0.0.1", port: node.amqpPort });
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      socket.on("data", (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 8) resolve(buf);
      });
      socket.once("error", reject);
      socket.once("close", () => resolve(buf));
      socket.write(Buffer.from("AMQP\x00\x00\x08\x00", "latin1"));
    });
    socket.destroy();
    expect(bytes.subarray(0, 8)).toEqual(PROTOCOL_HEADER);
  });

  it("stops: ports closed, VM gone, directory removed", async () => {
    const started = performance.now();
    await node.stop();
    console.info(`${node.nodeName} stopped in ${Math.round(performance.now() - started)} ms`);
    expect(await tcpAnswers(node.tlsPort)).toBe(false);
    expect(await tcpAnswers(node.amqpPort)).toBe(false);
    expect(() => process.kill(node.pid, 0)).toThrow();
    expect(existsSync(node.dir)).toBe(false);
    await node.stop(); // idempotent
  });
});
