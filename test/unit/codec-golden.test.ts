/**
 * Golden bytes: every expected byte array below was worked out by hand from the
 * AMQP 0-9-1 grammar and RabbitMQ's field-table errata, independently of the
 * encoder. Each case encodes and compares, then decodes the golden bytes back.
 */
import { describe, expect, it } from "vitest";
import { readU64 } from "../../src/protocol/codec.js";
import {
  FRAME_OVERHEAD,
  FrameParser,
  HEARTBEAT_FRAME,
  writeBodyFrame,
  writeHeaderFrame,
  writeMethodFrame,
} from "../../src/protocol/frame.js";
import {
  BASIC_ACK,
  BASIC_PUBLISH,
  type BasicProperties,
  CONNECTION_TUNE_OK,
  decodeBasicProperties,
  decodeMethod,
  encodeBasicProperties,
  type MethodInput,
  PROTOCOL_HEADER,
  QUEUE_DECLARE,
} from "../../src/protocol/generated/spec.js";
import { Decimal, decodeTable, encodeTable, Field, type FieldTable } from "../../src/protocol/table.js";

/** "01 00 0a" → bytes; whitespace and newlines are ignored. */
function hex(s: string): Buffer {
  const clean = s.replace(/\s+/g, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`bad hex: ${s}`);
  return Buffer.from(clean, "hex");
}

/** The hex of an ASCII string, so goldens can spell names out. */
function ascii(s: string): string {
  return Buffer.from(s, "latin1").toString("hex");
}

const FRAME_MAX = 131072;

function methodFrame(channel: number, method: MethodInput): Buffer {
  const buf = Buffer.alloc(4096);
  const end = writeMethodFrame(buf, 0, channel, method, FRAME_MAX);
  return buf.subarray(0, end);
}

/** Splits a frame into type, channel and payload, checking size and frame-end by hand. */
function split(frame: Buffer): { type: number; channel: number; payload: Buffer } {
  expect(frame.readUInt32BE(3)).toBe(frame.length - FRAME_OVERHEAD);
  expect(frame[frame.length - 1]).toBe(0xce);
  return { type: frame[0]!, channel: frame.readUInt16BE(1), payload: frame.subarray(7, frame.length - 1) };
}

/** Runs bytes through the real parser and returns the frames it yields. */
function parse(bytes: Buffer): { type: number; channel: number; payload: Buffer }[] {
  const out: { type: number; channel: number; payload: Buffer }[] = [];
  const p = new FrameParser((type, channel, payload) => out.push({ type, channel, payload }), FRAME_MAX);
  p.push(bytes);
  expect(p.buffered).toBe(0);
  return out;
}

describe("protocol header", () => {
  it('is "AMQP" 0 0 9 1 (protocol id 0, version 0-9-1)', () => {
    expect(PROTOCOL_HEADER).toEqual(hex(`${ascii("AMQP")} 00 00 09 01`));
  });
});

describe("method frames", () => {
  it("connection.tune-ok", () => {
    const golden = hex(`
      01 0000 0000000c
      000a 001f
      07ff
      00020000
      003c
      ce`);
    const frame = methodFrame(0, {
      name: "connection.tune-ok",
      args: { channelMax: 2047, frameMax: 131072, heartbeat: 60 },
    });
    expect(frame).toEqual(golden);

    const { type, channel, payload } = split(golden);
    expect([type, channel]).toEqual([1, 0]);
    expect(decodeMethod(payload)).toEqual({
      id: CONNECTION_TUNE_OK,
      name: "connection.tune-ok",
      args: { channelMax: 2047, frameMax: 131072, heartbeat: 60 },
    });
  });

  it("basic.publish with the mandatory bit (bit 0 of the bit octet)", () => {
    const golden = hex(`
      01 0001 0000000d
      003c 0028
      0000
      02 ${ascii("ex")}
      02 ${ascii("rk")}
      01
      ce`);
    const frame = methodFrame(1, {
      name: "basic.publish",
      args: { exchange: "ex", routingKey: "rk", mandatory: true },
    });
    expect(frame).toEqual(golden);
    expect(decodeMethod(split(golden).payload)).toEqual({
      id: BASIC_PUBLISH,
      name: "basic.publish",
      args: { ticket: 0, exchange: "ex", routingKey: "rk", mandatory: true, immediate: false },
    });
  });

  it("basic.publish packs mandatory and immediate into one octet (0b11)", () => {
    const golden = hex(`01 0001 00000009  003c 0028  0000  00  00  03  ce`);
    const frame = methodFrame(1, { name: "basic.publish", args: { mandatory: true, immediate: true } });
    expect(frame).toEqual(golden);
    const m = decodeMethod(split(golden).payload);
    expect(m.args).toEqual({ ticket: 0, exchange: "", routingKey: "", mandatory: true, immediate: true });
  });

  it("basic.ack with multiple and a tag above 2^32", () => {
    const golden = hex(`
      01 0005 0000000d
      003c 0050
      0000000102030405
      01
      ce`);
    const frame = methodFrame(5, {
      name: "basic.ack",
      args: { deliveryTag: 0x01_0203_0405, multiple: true },
    });
    expect(frame).toEqual(golden);
    const { channel, payload } = split(golden);
    expect(channel).toBe(5);
    expect(decodeMethod(payload)).toEqual({
      id: BASIC_ACK,
      name: "basic.ack",
      args: { deliveryTag: 0x01_0203_0405, multiple: true },
    });
  });

  it("basic.nack: multiple is bit 0, requeue bit 1 and requeue defaults to true", () => {
    const golden = hex(`01 0001 0000000d  003c 0078  000000000000002a  02  ce`);
    expect(methodFrame(1, { name: "basic.nack", args: { deliveryTag: 42 } })).toEqual(golden);
    expect(decodeMethod(split(golden).payload).args).toEqual({
      deliveryTag: 42,
      multiple: false,
      requeue: true,
    });
  });

  it("queue.declare with an arguments table", () => {
    // table: "x-message-ttl" I 60000 (1+13+1+4 = 19 bytes), "x-queue-type" S "quorum" (1+12+1+4+6 = 24)
    const golden = hex(`
      01 0001 00000039
      0032 000a
      0000
      02 ${ascii("q1")}
      02
      0000002b
        0d ${ascii("x-message-ttl")} 49 0000ea60
        0c ${ascii("x-queue-type")} 53 00000006 ${ascii("quorum")}
      ce`);
    const frame = methodFrame(1, {
      name: "queue.declare",
      args: {
        queue: "q1",
        durable: true,
        arguments: { "x-message-ttl": 60000, "x-queue-type": "quorum" },
      },
    });
    expect(frame).toEqual(golden);
    expect(decodeMethod(split(golden).payload)).toEqual({
      id: QUEUE_DECLARE,
      name: "queue.declare",
      args: {
        ticket: 0,
        queue: "q1",
        passive: false,
        durable: true,
        exclusive: false,
        autoDelete: false,
        nowait: false,
        arguments: { "x-message-ttl": 60000, "x-queue-type": "quorum" },
      },
    });
  });

  it("queue.declare bit order: passive 0, durable 1, exclusive 2, auto-delete 3, nowait 4", () => {
    const bits = [
      ["passive", 0x01],
      ["durable", 0x02],
      ["exclusive", 0x04],
      ["autoDelete", 0x08],
      ["nowait", 0x10],
    ] as const;
    for (const [name, bit] of bits) {
      const frame = methodFrame(1, { name: "queue.declare", args: { queue: "", [name]: true } });
      // 7 header + 4 ids + 2 ticket + 1 empty queue name → the bit octet, then an empty table
      expect(frame.subarray(7)).toEqual(
        hex(`0032000a 0000 00 ${bit.toString(16).padStart(2, "0")} 00000000 ce`),
      );
    }
  });

  it("connection.start-ok with client properties, longstr response and defaults", () => {
    const golden = hex(`
      01 0000 00000030
      000a 000b
      0000000d 07 ${ascii("product")} 53 00000000
      05 ${ascii("PLAIN")}
      0000000b 00 ${ascii("guest")} 00 ${ascii("pass")}
      05 ${ascii("en_US")}
      ce`);
    const frame = methodFrame(0, {
      name: "connection.start-ok",
      args: { clientProperties: { product: "" }, response: "\0guest\0pass" },
    });
    expect(frame).toEqual(golden);
    expect(decodeMethod(split(golden).payload).args).toEqual({
      clientProperties: { product: "" },
      mechanism: "PLAIN",
      response: Buffer.from("\0guest\0pass"),
      locale: "en_US",
    });
  });

  it("connection.close", () => {
    const golden = hex(`01 0000 00000018  000a 0032  0194  0d ${ascii("NOT_FOUND - x")} 0032 000a  ce`);
    expect(golden.length).toBe(0x18 + 8);
    const args = { replyCode: 404, replyText: "NOT_FOUND - x", classId: 50, methodId: 10 };
    expect(methodFrame(0, { name: "connection.close", args })).toEqual(golden);
    expect(decodeMethod(split(golden).payload).args).toEqual(args);
  });

  it("methods without arguments are just the two ids", () => {
    expect(methodFrame(3, { name: "tx.select", args: {} })).toEqual(hex(`01 0003 00000004 005a 000a ce`));
    expect(methodFrame(0, { name: "connection.close-ok", args: {} })).toEqual(
      hex(`01 0000 00000004 000a 0033 ce`),
    );
    expect(decodeMethod(hex("0055000b"))).toEqual({ id: 0x0055000b, name: "confirm.select-ok", args: {} });
  });

  it("golden method frames come out of the parser unchanged", () => {
    const a = hex(`01 0000 0000000c 000a001f 07ff 00020000 003c ce`);
    const b = hex(`01 0005 0000000d 003c0050 0000000102030405 01 ce`);
    const frames = parse(Buffer.concat([a, HEARTBEAT_FRAME, b]));
    expect(frames.map((f) => [f.type, f.channel, f.payload.toString("hex")])).toEqual([
      [1, 0, "000a001f07ff00020000003c"],
      [8, 0, ""],
      [1, 5, "003c00500000000102030405" + "01"],
    ]);
  });
});

describe("content header frames", () => {
  // flags: content-type 15, headers 13, delivery-mode 12, correlation-id 10, timestamp 6, cluster-id 2
  //   0x8000 | 0x2000 | 0x1000 | 0x0400 | 0x0040 | 0x0004 = 0xb444
  const golden = hex(`
    02 0001 00000033
    003c 0000 0000000000000005
    b444
    0a ${ascii("text/plain")}
    00000007 01 ${ascii("a")} 49 00000001
    02
    03 ${ascii("abc")}
    000000006553f100
    01 ${ascii("c")}
    ce`);
  const props: BasicProperties = {
    contentType: "text/plain",
    headers: { a: 1 },
    deliveryMode: 2,
    correlationId: "abc",
    timestamp: new Date(1_700_000_000 * 1000),
    clusterId: "c",
  };

  it("encodes class id, weight, body size, the flags word and the present properties in order", () => {
    const buf = Buffer.alloc(256);
    const end = writeHeaderFrame(buf, 0, 1, 60, 5, props, FRAME_MAX);
    expect(buf.subarray(0, end)).toEqual(golden);
  });

  it("decodes back", () => {
    const { type, channel, payload } = split(golden);
    expect([type, channel]).toEqual([2, 1]);
    expect(payload.readUInt16BE(0)).toBe(60);
    expect(payload.readUInt16BE(2)).toBe(0);
    expect(readU64(payload, 4)).toBe(5);
    const decoded = decodeBasicProperties(payload, 12);
    expect(decoded).toEqual(props);
    expect(Object.keys(decoded).sort()).toEqual(Object.keys(props).sort());
  });

  it("a body size above 2^32 is split into two 32-bit halves", () => {
    const buf = Buffer.alloc(64);
    const end = writeHeaderFrame(buf, 0, 9, 60, 0x1_0000_0005, undefined, FRAME_MAX);
    expect(buf.subarray(0, end)).toEqual(hex(`02 0009 0000000e 003c 0000 0000000100000005 0000 ce`));
  });

  // Property i of the spec's list is flag bit 15 - i.
  const each: [keyof BasicProperties, BasicProperties[keyof BasicProperties], number, string][] = [
    ["contentType", "t", 15, `01 ${ascii("t")}`],
    ["contentEncoding", "gzip", 14, `04 ${ascii("gzip")}`],
    ["headers", {}, 13, "00000000"],
    ["deliveryMode", 2, 12, "02"],
    ["priority", 9, 11, "09"],
    ["correlationId", "c", 10, `01 ${ascii("c")}`],
    ["replyTo", "r", 9, `01 ${ascii("r")}`],
    ["expiration", "60000", 8, `05 ${ascii("60000")}`],
    ["messageId", "m", 7, `01 ${ascii("m")}`],
    ["timestamp", new Date(0x65920080 * 1000), 6, "0000000065920080"],
    ["type", "ty", 5, `02 ${ascii("ty")}`],
    ["userId", "guest", 4, `05 ${ascii("guest")}`],
    ["appId", "app", 3, `03 ${ascii("app")}`],
    ["clusterId", "", 2, "00"],
  ];
  it.each(each)("%s alone (%o) sets only flag bit %i", (key, value, bit, bytes) => {
    const golden1 = hex(`${(1 << bit).toString(16).padStart(4, "0")} ${bytes}`);
    const buf = Buffer.alloc(64);
    const end = encodeBasicProperties(buf, 0, { [key]: value });
    expect(buf.subarray(0, end)).toEqual(golden1);
    expect(decodeBasicProperties(golden1, 0)).toEqual({ [key]: value });
  });

  it("there are 14 properties, and cluster-id is the lowest (bit 2)", () => {
    expect(each.length).toBe(14);
    expect(each.map((e) => e[2])).toEqual([15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2]);
  });

  it("no properties → a zero flags word", () => {
    const buf = Buffer.alloc(8, 0xff);
    expect(encodeBasicProperties(buf, 0, undefined)).toBe(2);
    expect(encodeBasicProperties(buf, 2, {})).toBe(4);
    expect(buf.subarray(0, 4)).toEqual(hex("0000 0000"));
    expect(decodeBasicProperties(hex("0000"), 0)).toEqual({});
  });
});

describe("body and heartbeat frames", () => {
  it("body frame", () => {
    const golden = hex(`03 0001 00000005 ${ascii("hello")} ce`);
    const buf = Buffer.alloc(64);
    const end = writeBodyFrame(buf, 0, 1, Buffer.from("hello"), 0, 5);
    expect(buf.subarray(0, end)).toEqual(golden);
    expect(parse(golden)).toEqual([{ type: 3, channel: 1, payload: Buffer.from("hello") }]);
  });

  it("body frame from a slice of a larger body", () => {
    const buf = Buffer.alloc(64);
    const end = writeBodyFrame(buf, 0, 2, Buffer.from("0123456789"), 3, 6);
    expect(buf.subarray(0, end)).toEqual(hex(`03 0002 00000003 ${ascii("345")} ce`));
  });

  it("heartbeat frame", () => {
    const golden = hex("08 0000 00000000 ce");
    expect(HEARTBEAT_FRAME).toEqual(golden);
    expect(parse(golden)).toEqual([{ type: 8, channel: 0, payload: Buffer.alloc(0) }]);
  });
});

describe("field table with every type letter", () => {
  // Each entry: key length, key (the type letter itself), type letter, value.
  const golden = hex(`
    00000087
    01 74 74 01
    01 62 62 fe
    01 42 42 c8
    01 73 73 fed4
    01 75 75 ea60
    01 49 49 fffe7960
    01 69 69 ee6b2800
    01 6c 6c fffffffed5fa0e00
    01 66 66 3fc00000
    01 64 64 c002000000000000
    01 44 44 02 00003039
    01 53 53 00000002 6869
    01 78 78 00000003 010203
    01 41 41 0000000b 49 00000001 53 00000001 61
    01 54 54 0000000065920080
    01 46 46 00000004 01 6b 74 01
    01 56 56
  `);
  const typed: FieldTable = {
    t: Field.bool(true),
    b: Field.int8(-2),
    B: Field.uint8(200),
    s: Field.int16(-300),
    u: Field.uint16(60000),
    I: Field.int32(-100000),
    i: Field.uint32(4_000_000_000),
    l: Field.int64(-5_000_000_000),
    f: Field.float(1.5),
    d: Field.double(-2.25),
    D: Field.decimal(2, 12345),
    S: Field.string("hi"),
    x: Field.bytes(Uint8Array.of(1, 2, 3)),
    A: [1, "a"],
    T: Field.timestamp(new Date(0x65920080 * 1000)),
    F: { k: true },
    V: Field.void(),
  };
  const plain: FieldTable = {
    t: true,
    b: -2,
    B: 200,
    s: -300,
    u: 60000,
    I: -100000,
    i: 4_000_000_000,
    l: -5_000_000_000,
    f: 1.5,
    d: -2.25,
    D: new Decimal(2, 12345),
    S: "hi",
    x: Buffer.from([1, 2, 3]),
    A: [1, "a"],
    T: new Date("2024-01-01T00:00:00Z"),
    F: { k: true },
    V: null,
  };

  it("the golden table is 4 + 0x87 bytes", () => {
    expect(golden.length).toBe(4 + 0x87);
  });

  it("encodes typed values to the golden bytes", () => {
    const buf = Buffer.alloc(512);
    const end = encodeTable(buf, 0, typed);
    expect(buf.subarray(0, end)).toEqual(golden);
  });

  it("decodes the golden bytes to plain values", () => {
    const decoded = decodeTable(golden, 0);
    expect(decoded).toEqual(plain);
    expect(Object.keys(decoded)).toEqual(Object.keys(plain));
    expect(decoded["D"]).toBeInstanceOf(Decimal);
    expect(Buffer.isBuffer(decoded["x"])).toBe(true);
  });

  it("decodes at an offset and inside a larger buffer", () => {
    const wrapped = Buffer.concat([hex("deadbeef"), golden, hex("ffff")]);
    expect(decodeTable(wrapped, 4)).toEqual(plain);
  });

  it("the x value is a copy, not a view of the frame", () => {
    const copy = Buffer.from(golden);
    const decoded = decodeTable(copy, 0);
    copy.fill(0);
    expect(decoded["x"]).toEqual(Buffer.from([1, 2, 3]));
  });

  it("plain JS values pick I, l, d, S, t, x, T, A, F, D and V", () => {
    const buf = Buffer.alloc(256);
    const end = encodeTable(buf, 0, {
      a: 1,
      b: 2 ** 40,
      c: 0.5,
      d: 2n ** 62n,
      e: "s",
      f: false,
      g: Buffer.from([7]),
      h: new Date(1000),
      i: [],
      j: {},
      k: new Decimal(1, -1),
      l: null,
      m: undefined, // dropped
    });
    expect(buf.subarray(0, end)).toEqual(
      hex(`
        00000060
        01 61 49 00000001
        01 62 6c 0000010000000000
        01 63 64 3fe0000000000000
        01 64 6c 4000000000000000
        01 65 53 00000001 73
        01 66 74 00
        01 67 78 00000001 07
        01 68 54 0000000000000001
        01 69 41 00000000
        01 6a 46 00000000
        01 6b 44 01 ffffffff
        01 6c 56
      `),
    );
  });
});
