/**
 * Message properties and header field tables through a real broker: all 14 basic
 * properties, and every field-table type, as values and as wire type letters.
 *
 * What RabbitMQ 3.10.8 does with the letters (observed, and asserted below):
 *  - a message it does not touch keeps its content header byte for byte, so every
 *    letter comes back as sent;
 *  - a message it re-encodes (dead-lettering adds x-death and rewrites the table,
 *    sorted by key) still keeps every letter: b B s u I i l f d D S x A T F V t all
 *    map to distinct Erlang types and back. No unsigned type is turned into a signed one.
 *  - but it cannot parse a non-finite float or double (NaN, ±Infinity): the channel
 *    process crashes and the broker closes the whole connection with 541 INTERNAL_ERROR,
 *    so warren refuses them with a FieldTableError before sending.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  type BasicProperties,
  type Channel,
  ChannelClosedByBroker,
  Decimal,
  Field,
  type FieldTable,
  FieldTableError,
  FrameTooLargeError,
  type Message,
} from "../../src/index.js";
import { FRAME_HEADER } from "../../src/protocol/generated/spec.js";
import { encodeTable } from "../../src/protocol/table.js";
import { useAdmin } from "../support/admin.js";
import { deferred, rejection, within } from "../support/async.js";
import { deliveryOf } from "../support/deliveries.js";

/** admin.pub (confirm mode) publishes and declares; `ch` receives. */
const admin = useAdmin();
let ch: Channel;
/** Raw payload of the last content header frame `ch` received. */
let lastHeader: Buffer | undefined;

beforeAll(async () => {
  ch = await admin.conn.openChannel();
  const inner = ch as unknown as { onFrame: (type: number, payload: Buffer) => void };
  const orig = inner.onFrame.bind(ch);
  inner.onFrame = (type, payload) => {
    if (type === FRAME_HEADER) lastHeader = Buffer.from(payload);
    orig(type, payload);
  };
});

async function viaGet(queue: string, props: BasicProperties | undefined, body = "props"): Promise<Message> {
  await admin.pub.publish("", queue, body, props);
  const m = await ch.basicGet({ queue, noAck: true });
  expect(m).not.toBeNull();
  return m!;
}

function viaConsume(queue: string, props: BasicProperties | undefined): Promise<Message> {
  return deliveryOf(ch, queue, () => admin.pub.publish("", queue, "props", props));
}

// ─── reading wire type letters ────────────────────────────────────────────────

/** Type letters of a raw field table at `off`, by path: "key", "outer.inner", "list[2]". */
function tableLetters(
  buf: Buffer,
  off: number,
  prefix = "",
  out: Record<string, string> = {},
): Record<string, string> {
  const end = off + 4 + buf.readUInt32BE(off);
  let p = off + 4;
  while (p < end) {
    const klen = buf[p]!;
    const key = buf.toString("utf8", p + 1, p + 1 + klen);
    p = valueLetters(buf, p + 1 + klen, prefix + key, out);
  }
  return out;
}

function valueLetters(buf: Buffer, p: number, path: string, out: Record<string, string>): number {
  const t = String.fromCharCode(buf[p]!);
  out[path] = t;
  p++;
  switch (t) {
    case "t":
    case "b":
    case "B":
      return p + 1;
    case "s":
    case "u":
      return p + 2;
    case "I":
    case "i":
    case "f":
      return p + 4;
    case "l":
    case "d":
    case "T":
      return p + 8;
    case "D":
      return p + 5;
    case "V":
      return p;
    case "S":
    case "x":
      return p + 4 + buf.readUInt32BE(p);
    case "F":
      tableLetters(buf, p, `${path}.`, out);
      return p + 4 + buf.readUInt32BE(p);
    case "A": {
      const end = p + 4 + buf.readUInt32BE(p);
      let q = p + 4;
      for (let i = 0; q < end; i++) q = valueLetters(buf, q, `${path}[${i}]`, out);
      return end;
    }
    default:
      throw new Error(`unknown field type letter ${JSON.stringify(t)} at ${path}`);
  }
}

/** Letters warren puts on the wire for a table. */
function sentLetters(table: FieldTable): Record<string, string> {
  const b = Buffer.alloc(64 * 1024);
  encodeTable(b, 0, table);
  return tableLetters(b, 0);
}

/** Letters of the headers table in a received content header published with headers only. */
function receivedLetters(header: Buffer): Record<string, string> {
  // class(2) weight(2) body size(8) flags(2), then the headers table (the only property set).
  expect(header.readUInt16BE(12)).toBe(0x2000);
  return tableLetters(header, 14);
}

// ─── fixtures ─────────────────────────────────────────────────────────────────

const T1 = new Date(1_700_000_000_000);
const T2 = new Date(1_700_000_123_000);
const BIG = 2n ** 60n + 7n; // beyond 2^53: only a bigint holds it exactly
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** Every field type, through Field.* and through plain JS values. */
const HEADERS: FieldTable = {
  boolTrue: true,
  boolFalse: false,
  boolTyped: Field.bool(true),
  int8Min: Field.int8(-128),
  int8Max: Field.int8(127),
  uint8Max: Field.uint8(255),
  int16Min: Field.int16(-32768),
  uint16Max: Field.uint16(65535),
  int32Min: Field.int32(-2147483648),
  uint32Max: Field.uint32(4294967295),
  int64Min: Field.int64(-(2n ** 63n)),
  int64Max: Field.int64(2n ** 63n - 1n),
  int64Small: Field.int64(5),
  plainInt: 42,
  plainNegative: -7,
  plainInt32Max: 2147483647,
  plainBeyondInt32: 2 ** 40,
  plainMaxSafe: Number.MAX_SAFE_INTEGER,
  plainMinSafe: Number.MIN_SAFE_INTEGER,
  bigBeyond53: BIG,
  bigNegative: -(2n ** 62n) - 3n,
  float: Field.float(1.5),
  floatInexact: Field.float(0.1),
  double: Field.double(Math.PI),
  plainDouble: 0.1,
  decimal: Field.decimal(2, 12345),
  decimalNegative: new Decimal(3, -5),
  longString: `ünïcödé ✓ 🐇 ${"s".repeat(2000)}`,
  emptyString: "",
  stringTyped: Field.string("typed"),
  bytes: ALL_BYTES,
  bytesTyped: Field.bytes(new Uint8Array([0, 1, 2])),
  emptyBytes: new Uint8Array(0),
  array: [
    1,
    "two",
    true,
    null,
    2.5,
    Field.int16(-3),
    Field.uint8(200),
    [1, [2, []]],
    { inner: "table" },
    Buffer.from([9, 8]),
    T1,
    BIG,
    new Decimal(1, 15),
  ],
  emptyArray: [],
  timestamp: T1,
  timestampTyped: Field.timestamp(T2),
  nested: { level1: { level2: { level3: "deep", n: Field.uint16(7) }, list: [1, 2] }, empty: {} },
  voidNull: null,
  voidTyped: Field.void(),
  undefinedIsDropped: undefined,
  "ключ ✓": "a non-ASCII key",
  ["k".repeat(255)]: "the longest key",
};

/** What the headers decode to. */
const DECODED: FieldTable = {
  boolTrue: true,
  boolFalse: false,
  boolTyped: true,
  int8Min: -128,
  int8Max: 127,
  uint8Max: 255,
  int16Min: -32768,
  uint16Max: 65535,
  int32Min: -2147483648,
  uint32Max: 4294967295,
  int64Min: -(2n ** 63n),
  int64Max: 2n ** 63n - 1n,
  int64Small: 5,
  plainInt: 42,
  plainNegative: -7,
  plainInt32Max: 2147483647,
  plainBeyondInt32: 2 ** 40,
  plainMaxSafe: Number.MAX_SAFE_INTEGER,
  plainMinSafe: Number.MIN_SAFE_INTEGER,
  bigBeyond53: BIG,
  bigNegative: -(2n ** 62n) - 3n,
  float: 1.5,
  floatInexact: Math.fround(0.1),
  double: Math.PI,
  plainDouble: 0.1,
  decimal: new Decimal(2, 12345),
  decimalNegative: new Decimal(3, -5),
  longString: `ünïcödé ✓ 🐇 ${"s".repeat(2000)}`,
  emptyString: "",
  stringTyped: "typed",
  bytes: ALL_BYTES,
  bytesTyped: Buffer.from([0, 1, 2]),
  emptyBytes: Buffer.alloc(0),
  array: [
    1,
    "two",
    true,
    null,
    2.5,
    -3,
    200,
    [1, [2, []]],
    { inner: "table" },
    Buffer.from([9, 8]),
    T1,
    BIG,
    new Decimal(1, 15),
  ],
  emptyArray: [],
  timestamp: T1,
  timestampTyped: T2,
  nested: { level1: { level2: { level3: "deep", n: 7 }, list: [1, 2] }, empty: {} },
  voidNull: null,
  voidTyped: null,
  "ключ ✓": "a non-ASCII key",
  ["k".repeat(255)]: "the longest key",
};

describe("basic properties", () => {
  const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
  const ALL: BasicProperties = {
    contentType: "application/json",
    contentEncoding: "gzip",
    headers: { "x-custom": "yes", n: 1 },
    deliveryMode: 2,
    priority: 9,
    correlationId: "corr-42",
    replyTo: "warren.reply.queue",
    expiration: "60000",
    messageId: "msg-0001",
    timestamp,
    type: "order.created",
    userId: "guest", // RabbitMQ checks it against the authenticated user
    appId: "warren-tests",
    clusterId: "cluster-x",
  };

  it("all 14 round-trip through basic.get", async () => {
    expect(Object.keys(ALL)).toHaveLength(14);
    const m = await viaGet(await admin.freshQueue(), ALL);
    expect(m.properties).toStrictEqual(ALL);
  });

  it("all 14 round-trip through a consumer", async () => {
    const m = await viaConsume(await admin.freshQueue(), ALL);
    expect(m.properties).toStrictEqual(ALL);
  });

  it("each one alone comes back alone (every property flag is independent)", async () => {
    const queue = await admin.freshQueue();
    for (const [key, value] of Object.entries(ALL)) {
      const props = { [key]: value } as BasicProperties;
      const m = await viaGet(queue, props);
      expect(m.properties, key).toStrictEqual(props);
    }
  });

  it("no properties come back as an empty object", async () => {
    const m = await viaGet(await admin.freshQueue(), undefined);
    expect(m.properties).toStrictEqual({});
    const m2 = await viaGet(await admin.freshQueue(), {});
    expect(m2.properties).toStrictEqual({});
  });

  it("timestamps are whole seconds: milliseconds are dropped", async () => {
    const m = await viaGet(await admin.freshQueue(), { timestamp: new Date(1_700_000_000_999) });
    expect(m.properties.timestamp).toStrictEqual(new Date(1_700_000_000_000));
  });

  it("short strings of 255 bytes round-trip; 256 are refused before anything is sent", async () => {
    const queue = await admin.freshQueue();
    const longest = `${"é".repeat(127)}x`; // 255 bytes in UTF-8
    expect(Buffer.byteLength(longest)).toBe(255);
    const m = await viaGet(queue, { messageId: longest, contentType: "c".repeat(255) });
    expect(m.properties.messageId).toBe(longest);
    const err = await rejection(admin.pub.publish("", queue, "x", { messageId: `${longest}y` }));
    expect(err).toBeInstanceOf(FieldTableError);
    expect((err as FieldTableError).message).toContain("short string is longer than 255 bytes");
    // Nothing half-written: the channel and the connection carry on.
    expect(admin.pub.isOpen).toBe(true);
    expect((await viaGet(queue, { messageId: "after" })).properties.messageId).toBe("after");
    expect(await ch.basicGet({ queue })).toBeNull();
  });

  it("a userId other than the authenticated user is refused with 406 on basic.publish", async () => {
    const c = await admin.conn.openChannel();
    const queue = await admin.freshQueue();
    c.basicPublish("", queue, "spoofed", { userId: "somebody-else" });
    const err = await rejection(c.basicQos({ prefetchCount: 1 }));
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect((err as ChannelClosedByBroker).replyCode).toBe(406);
    expect((err as ChannelClosedByBroker).methodName).toBe("basic.publish");
    expect((err as ChannelClosedByBroker).replyText).toContain("user_id");
  });
});

describe("header field tables", () => {
  it("every type's value survives the broker (basic.get)", async () => {
    const m = await viaGet(await admin.freshQueue(), { headers: HEADERS });
    expect(m.properties.headers).toStrictEqual(DECODED);
    expect(Object.keys(m.properties.headers!)).not.toContain("undefinedIsDropped");
  });

  it("every type's value survives the broker (consumer)", async () => {
    const m = await viaConsume(await admin.freshQueue(), { headers: HEADERS });
    expect(m.properties.headers).toStrictEqual(DECODED);
  });

  it("warren picks the wire types documented for plain values", () => {
    const l = sentLetters(HEADERS);
    expect(l).toMatchObject({
      boolTrue: "t",
      plainInt: "I",
      plainInt32Max: "I",
      plainBeyondInt32: "l",
      plainMaxSafe: "l",
      bigBeyond53: "l",
      plainDouble: "d",
      decimalNegative: "D",
      longString: "S",
      bytes: "x",
      emptyBytes: "x",
      array: "A",
      "array[6]": "B",
      timestamp: "T",
      nested: "F",
      "nested.level1.level2.n": "u",
      voidNull: "V",
      voidTyped: "V",
    });
    expect(l).not.toHaveProperty("undefinedIsDropped");
  });

  it("RabbitMQ hands every type letter back unchanged", async () => {
    lastHeader = undefined;
    await viaGet(await admin.freshQueue(), { headers: HEADERS });
    expect(lastHeader).toBeInstanceOf(Buffer);
    const sent = sentLetters(HEADERS);
    expect(Object.keys(sent).length).toBeGreaterThan(60);
    expect(receivedLetters(lastHeader!)).toStrictEqual(sent);
  });

  it("letters and values survive a re-encode by the broker (dead-lettering adds x-death)", async () => {
    const dlq = await admin.freshQueue();
    const queue = await admin.freshQueue({ "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq });
    const deadLettered = deferred<Message>();
    const tag = await ch.basicConsume({ queue: dlq, noAck: true }, deadLettered.resolve);
    await admin.pub.publish("", queue, "dead", { headers: HEADERS });
    const m = (await ch.basicGet({ queue }))!;
    ch.basicReject(m.deliveryTag, { requeue: false });
    const dead = await within(deadLettered.promise, 10_000, "the dead-lettered message");
    await ch.basicCancel(tag);
    const headers = dead.properties.headers!;
    expect(headers["x-death"]).toBeInstanceOf(Array);
    expect(headers["x-first-death-reason"]).toBe("rejected");
    const {
      "x-death": _d,
      "x-first-death-exchange": _e,
      "x-first-death-queue": _q,
      "x-first-death-reason": _r,
      ...rest
    } = headers;
    expect(rest).toStrictEqual(DECODED);

    const received = receivedLetters(lastHeader!);
    const sent = sentLetters(HEADERS);
    const mine = Object.fromEntries(Object.entries(received).filter(([k]) => !k.startsWith("x-")));
    expect(mine).toStrictEqual(sent);
    // What the broker writes itself: a count as a long (l), a time as a timestamp (T).
    expect(received["x-death[0].count"]).toBe("l");
    expect(received["x-death[0].time"]).toBe("T");
  });

  it("a NaN or infinite number in a header is refused before it reaches RabbitMQ (which would close the connection with 541)", async () => {
    const queue = await admin.freshQueue();
    for (const value of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Field.float(Number.NEGATIVE_INFINITY),
      Field.double(Number.NaN),
    ]) {
      const err = await rejection(admin.pub.publish("", queue, "x", { headers: { value } }));
      expect(err).toBeInstanceOf(FieldTableError);
      expect((err as FieldTableError).message).toContain("RabbitMQ refuses non-finite numbers");
    }
    expect(admin.pub.isOpen).toBe(true);
    expect(admin.conn.isOpen).toBe(true);
    await admin.pub.publish("", queue, "still fine", { headers: { value: 1.5 } });
  });

  it("a large header table (~100 KiB, within frame_max) round-trips", async () => {
    const queue = await admin.freshQueue();
    const headers: FieldTable = {};
    for (let i = 0; i < 100; i++) headers[`h${i}`] = `${i}:${"v".repeat(1000)}`;
    const m = await viaGet(queue, { headers });
    expect(m.properties.headers).toStrictEqual(headers);
  });

  it("a header table larger than frame_max is refused with FrameTooLargeError; the channel carries on", async () => {
    const queue = await admin.freshQueue();
    const err = await rejection(
      admin.pub.publish("", queue, "x", { headers: { big: "v".repeat(admin.conn.frameMax) } }),
    );
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(admin.pub.isOpen).toBe(true);
    const m = await viaGet(queue, { headers: { small: 1 } });
    expect(m.properties.headers).toStrictEqual({ small: 1 });
    expect(await ch.basicGet({ queue })).toBeNull();
  });
});
