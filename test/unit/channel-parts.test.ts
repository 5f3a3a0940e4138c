/**
 * The parts a Channel is made of, without a broker or a connection: the content assembler
 * (method → header → bodies), the method-call FIFO with its timeouts, the publish confirms
 * (acks, nacks, returns), and the publish framing written into a fake frame sink and parsed back.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ReturnedMessage } from "../../src/amqp/channel-types.js";
import { ContentAssembler } from "../../src/amqp/content-assembler.js";
import * as args from "../../src/amqp/method-args.js";
import { MethodCalls } from "../../src/amqp/method-calls.js";
import { PublishConfirms } from "../../src/amqp/publish-confirms.js";
import { FrameError, PublishNackedError, UnroutableError } from "../../src/errors.js";
import { type FrameSink, writePublish } from "../../src/protocol/content-writer.js";
import { FRAME_OVERHEAD, FrameParser, writeHeaderFrame, writeMethodFrame } from "../../src/protocol/frame.js";
import {
  type BasicProperties,
  decodeMethod,
  FRAME_BODY,
  FRAME_HEADER,
  FRAME_METHOD,
  METHOD_IDS,
  type Method,
  type MethodInput,
} from "../../src/protocol/generated/spec.js";

// ─── frames as the channel receives them (payloads) ─────────────────────────

function methodPayload(m: MethodInput): Buffer {
  const buf = Buffer.alloc(4096);
  const end = writeMethodFrame(buf, 0, 1, m, 0);
  return buf.subarray(7, end - 1);
}

function headerPayload(size: number, props?: BasicProperties): Buffer {
  const buf = Buffer.alloc(4096);
  const end = writeHeaderFrame(buf, 0, 1, 60, size, props, 0);
  return buf.subarray(7, end - 1);
}

const deliver: MethodInput = {
  name: "basic.deliver",
  args: { consumerTag: "c", deliveryTag: 7, redelivered: false, exchange: "x", routingKey: "k" },
};

function assembler(maxMessageSize = 1 << 20) {
  const methods: Method[] = [];
  const contents: { method: Method; properties: BasicProperties; body: Buffer }[] = [];
  const a = new ContentAssembler(1, () => maxMessageSize, {
    method: (m) => methods.push(m),
    content: (method, properties, body) => contents.push({ method, properties, body }),
  });
  return { a, methods, contents };
}

describe("ContentAssembler", () => {
  it("passes methods without content straight through", () => {
    const { a, methods, contents } = assembler();
    a.push(FRAME_METHOD, methodPayload({ name: "basic.qos-ok", args: {} }));
    expect(methods.map((m) => m.name)).toEqual(["basic.qos-ok"]);
    expect(contents).toEqual([]);
    expect(a.busy).toBe(false);
  });

  it("assembles method, header and bodies split over frames into one message", () => {
    const { a, contents } = assembler();
    a.push(FRAME_METHOD, methodPayload(deliver));
    expect(a.busy).toBe(true);
    a.push(FRAME_HEADER, headerPayload(10, { messageId: "m1" }));
    a.push(FRAME_BODY, Buffer.from("hello"));
    expect(contents).toHaveLength(0);
    a.push(FRAME_BODY, Buffer.from("world"));
    expect(contents).toHaveLength(1);
    expect(contents[0]!.method.name).toBe("basic.deliver");
    expect(contents[0]!.properties.messageId).toBe("m1");
    expect(contents[0]!.body.toString()).toBe("helloworld");
    expect(a.busy).toBe(false);
  });

  it("hands a body that came in one frame over uncopied, and an empty body at once", () => {
    const { a, contents } = assembler();
    const payload = Buffer.from("whole");
    a.push(FRAME_METHOD, methodPayload(deliver));
    a.push(FRAME_HEADER, headerPayload(payload.length));
    a.push(FRAME_BODY, payload);
    expect(contents[0]!.body).toBe(payload);
    a.push(FRAME_METHOD, methodPayload(deliver));
    a.push(FRAME_HEADER, headerPayload(0));
    expect(contents[1]!.body.length).toBe(0);
  });

  it.each([
    ["a header without a content method", [[FRAME_HEADER, () => headerPayload(1)]], 505],
    ["a body without a header", [[FRAME_BODY, () => Buffer.from("x")]], 505],
    [
      "a method where a header belongs",
      [
        [FRAME_METHOD, () => methodPayload(deliver)],
        [FRAME_METHOD, () => methodPayload(deliver)],
      ],
      505,
    ],
    [
      "a body longer than its header declared",
      [
        [FRAME_METHOD, () => methodPayload(deliver)],
        [FRAME_HEADER, () => headerPayload(3)],
        [FRAME_BODY, () => Buffer.from("four")],
      ],
      501,
    ],
    [
      "a header too short",
      [
        [FRAME_METHOD, () => methodPayload(deliver)],
        [FRAME_HEADER, () => Buffer.alloc(5)],
      ],
      501,
    ],
    ["an unknown frame type", [[9, () => Buffer.alloc(0)]], 503],
  ] as const)("%s is a FrameError with the right reply code", (_what, frames, replyCode) => {
    const { a } = assembler();
    let thrown: unknown;
    try {
      for (const [type, payload] of frames) a.push(type, payload());
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as FrameError).replyCode).toBe(replyCode);
  });

  it("refuses a message over maxMessageSize from its header, before any body is stored", () => {
    const { a } = assembler(100);
    a.push(FRAME_METHOD, methodPayload(deliver));
    expect(() => a.push(FRAME_HEADER, headerPayload(101))).toThrow(/exceeds maxMessageSize \(100\)/);
  });
});

// ─── method calls ───────────────────────────────────────────────────────────

describe("MethodCalls", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const reply = (m: MethodInput): Method => decodeMethod(methodPayload(m));

  it("answers calls in the order they were sent, and refuses a reply nobody waits for (505)", () => {
    const calls = new MethodCalls({
      channel: 3,
      timeout: 0,
      observer: undefined,
      onTimeout: () => undefined,
    });
    const got: string[] = [];
    calls.expect(
      [METHOD_IDS["queue.declare-ok"]],
      (m) => got.push(`1:${m.name}`),
      () => undefined,
      "queue.declare",
    );
    calls.expect(
      [METHOD_IDS["basic.qos-ok"]],
      (m) => got.push(`2:${m.name}`),
      () => undefined,
      "basic.qos",
    );
    calls.reply(reply({ name: "queue.declare-ok", args: { queue: "q", messageCount: 0, consumerCount: 0 } }));
    calls.reply(reply({ name: "basic.qos-ok", args: {} }));
    expect(got).toEqual(["1:queue.declare-ok", "2:basic.qos-ok"]);
    expect(() => calls.reply(reply({ name: "basic.qos-ok", args: {} }))).toThrow(FrameError);
  });

  it("a reply for another method than the oldest call is a 505 too", () => {
    const calls = new MethodCalls({
      channel: 3,
      timeout: 0,
      observer: undefined,
      onTimeout: () => undefined,
    });
    calls.expect(
      [METHOD_IDS["basic.qos-ok"]],
      () => undefined,
      () => undefined,
      "basic.qos",
    );
    let thrown: unknown;
    try {
      calls.reply(reply({ name: "queue.purge-ok", args: { messageCount: 0 } }));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as FrameError).replyCode).toBe(505);
    expect(calls.size).toBe(1);
  });

  it("times a call out after `timeout` ms, tells the observer, and rejectAll rejects the rest", () => {
    vi.useFakeTimers();
    const timedOut: string[] = [];
    const seen: string[] = [];
    const calls = new MethodCalls({
      channel: 1,
      timeout: 500,
      observer: {
        methodSent: (m) => seen.push(`sent ${m}`),
        methodReplied: (m) => seen.push(`replied ${m}`),
        methodTimedOut: (m) => seen.push(`timeout ${m}`),
      },
      onTimeout: (name, ms) => timedOut.push(`${name} ${ms}`),
    });
    const rejected: Error[] = [];
    calls.expect(
      [METHOD_IDS["basic.qos-ok"]],
      () => undefined,
      (e) => rejected.push(e),
      "basic.qos",
    );
    vi.advanceTimersByTime(499);
    expect(timedOut).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(timedOut).toEqual(["basic.qos 500"]);
    expect(seen).toEqual(["sent basic.qos", "timeout basic.qos"]);
    calls.rejectAll(new Error("closed"));
    expect(rejected.map((e) => e.message)).toEqual(["closed"]);
    expect(calls.size).toBe(0);
  });

  it("a reply in time clears the timer and is reported with its latency", () => {
    vi.useFakeTimers();
    const timedOut: string[] = [];
    const replied: number[] = [];
    const calls = new MethodCalls({
      channel: 1,
      timeout: 500,
      observer: { methodReplied: (_m, s) => replied.push(s) },
      onTimeout: (name) => timedOut.push(name),
    });
    calls.expect(
      [METHOD_IDS["basic.qos-ok"]],
      () => undefined,
      () => undefined,
      "basic.qos",
    );
    calls.reply(reply({ name: "basic.qos-ok", args: {} }));
    vi.advanceTimersByTime(10_000);
    expect(timedOut).toEqual([]);
    expect(replied).toHaveLength(1);
  });
});

// ─── publish confirms ───────────────────────────────────────────────────────

function sink() {
  const s = { settled: undefined as undefined | "ok" | Error };
  return {
    s,
    sink: {
      resolve: () => {
        s.settled = "ok";
      },
      reject: (e: Error) => {
        s.settled = e;
      },
    },
  };
}

const returned = (body: string, messageId?: string): ReturnedMessage => ({
  body: Buffer.from(body),
  properties: messageId === undefined ? {} : { messageId },
  replyCode: 312,
  replyText: "NO_ROUTE",
  exchange: "x",
  routingKey: "k",
});

describe("PublishConfirms", () => {
  it("acks (single and multiple) resolve, a nack rejects with PublishNackedError naming the publish", () => {
    const c = new PublishConfirms(4);
    const [a, b, d] = [sink(), sink(), sink()];
    c.add(a.sink);
    c.add(undefined); // a fire-and-forget publish takes a number too
    c.add(b.sink);
    c.add(d.sink);
    expect(c.size).toBe(3);
    expect(c.nextSeq).toBe(5);
    c.settle(3, true, false);
    expect([a.s.settled, b.s.settled, d.s.settled]).toEqual(["ok", "ok", undefined]);
    c.settle(4, false, true);
    expect(d.s.settled).toBeInstanceOf(PublishNackedError);
    expect((d.s.settled as Error).message).toMatch(/publish #4 on channel 4/);
    expect(c.size).toBe(0);
  });

  it("a return matches the earliest mandatory publish with the same exchange, key, id and body; its ack rejects it", () => {
    const c = new PublishConfirms(1);
    const [first, second, other] = [sink(), sink(), sink()];
    const body = Buffer.from("same");
    c.add(first.sink, { exchange: "x", routingKey: "k", messageId: undefined, body });
    c.add(second.sink, { exchange: "x", routingKey: "k", messageId: undefined, body });
    c.add(other.sink, {
      exchange: "x",
      routingKey: "k",
      messageId: undefined,
      body: Buffer.from("different"),
    });
    c.returned(returned("same"));
    c.settle(3, true, false);
    expect(first.s.settled).toBeInstanceOf(UnroutableError);
    expect(second.s.settled).toBe("ok");
    expect(other.s.settled).toBe("ok");
  });

  it("a return that matches no publish (another message id) changes nothing", () => {
    const c = new PublishConfirms(1);
    const p = sink();
    c.add(p.sink, { exchange: "x", routingKey: "k", messageId: "a", body: Buffer.from("b") });
    c.returned(returned("b", "other"));
    c.settle(1, false, false);
    expect(p.s.settled).toBe("ok");
  });

  it("failAll rejects every unsettled publish with the close reason", () => {
    const c = new PublishConfirms(1);
    const [a, b] = [sink(), sink()];
    c.add(a.sink);
    c.add(b.sink);
    c.settle(1, false, false);
    const reason = new Error("channel closed");
    c.failAll(reason);
    expect(a.s.settled).toBe("ok");
    expect(b.s.settled).toBe(reason);
    expect(c.size).toBe(0);
  });
});

// ─── publish framing ────────────────────────────────────────────────────────

/** A growable buffer with the FrameWriter's contract, collecting what was written. */
class FakeSink implements FrameSink {
  buf = Buffer.alloc(64);
  pos = 0;
  readonly out: Buffer[] = [];
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
  commit(end: number): void {
    this.pos = end;
  }
  writeBuffer(b: Buffer): void {
    this.out.push(Buffer.from(this.buf.subarray(0, this.pos)), b);
    this.buf = Buffer.alloc(64);
    this.pos = 0;
  }
  bytes(): Buffer {
    return Buffer.concat([...this.out, this.buf.subarray(0, this.pos)]);
  }
}

function framesOf(bytes: Buffer): { type: number; channel: number; size: number }[] {
  const frames: { type: number; channel: number; size: number }[] = [];
  const p = new FrameParser(
    (type, channel, payload) => frames.push({ type, channel, size: payload.length }),
    0,
  );
  p.push(bytes);
  return frames;
}

describe("writePublish", () => {
  it.each([
    [0, 4096, [0, 0]],
    [100, 4096, [0, 0, 100]],
    [
      10_000,
      4096,
      [0, 0, 4096 - FRAME_OVERHEAD, 4096 - FRAME_OVERHEAD, 10_000 - 2 * (4096 - FRAME_OVERHEAD)],
    ],
    [200_000, 0, [0, 0, 200_000]],
  ])(
    "a %i-byte body at frame_max %i: method, header and body frames of the right sizes",
    (size, frameMax, sizes) => {
      const w = new FakeSink();
      writePublish(w, 5, frameMax, { exchange: "x", routingKey: "k" }, Buffer.alloc(size, 1), {
        messageId: "m",
      });
      const frames = framesOf(w.bytes());
      expect(frames.map((f) => f.type)).toEqual([
        FRAME_METHOD,
        FRAME_HEADER,
        ...sizes.slice(2).map(() => FRAME_BODY),
      ]);
      expect(frames.every((f) => f.channel === 5)).toBe(true);
      expect(frames.slice(2).map((f) => f.size)).toEqual(sizes.slice(2));
    },
  );

  it("a large body is handed to the sink uncopied", () => {
    const w = new FakeSink();
    const body = Buffer.alloc(100_000, 7);
    writePublish(w, 1, 0, { exchange: "", routingKey: "q" }, body, undefined);
    // The same memory, not a copy of it.
    const handed = w.out.filter((b) => b.buffer === body.buffer && b.byteOffset === body.byteOffset);
    expect(handed.map((b) => b.length)).toEqual([body.length]);
  });
});

// ─── option objects → methods ───────────────────────────────────────────────

describe("method arguments", () => {
  it("name no-wait as the spec does and fill in the API's defaults", () => {
    expect(args.exchangeDeclare({ exchange: "x", noWait: true })).toEqual({
      name: "exchange.declare",
      args: {
        exchange: "x",
        type: "direct",
        passive: undefined,
        durable: undefined,
        autoDelete: undefined,
        internal: undefined,
        nowait: true,
        arguments: undefined,
      },
    });
    expect(args.queueDeclare({}).args).toMatchObject({ queue: "" });
    expect(args.basicQos({}).args).toEqual({ prefetchCount: 0, prefetchSize: 0, global: undefined });
    expect(
      args.exchangeBinding("exchange.unbind", { destination: "d", source: "s", routingKey: "k" }),
    ).toMatchObject({
      name: "exchange.unbind",
      args: { destination: "d", source: "s", routingKey: "k" },
    });
    expect(args.basicConsume({ queue: "q", noAck: true }, "").args).toMatchObject({
      queue: "q",
      consumerTag: "",
      noAck: true,
    });
  });

  it("every method they build encodes (the generated codec accepts its arguments)", () => {
    const built = [
      args.exchangeDeclare({ exchange: "x" }),
      args.exchangeDelete({ exchange: "x", ifUnused: true }),
      args.exchangeBinding("exchange.bind", { destination: "d", source: "s", routingKey: "" }),
      args.queueDeclare({ queue: "q", durable: true, arguments: { "x-queue-type": "quorum" } }),
      args.queueBind({ queue: "q", exchange: "x", routingKey: "k" }),
      args.queueUnbind({ queue: "q", exchange: "x", routingKey: "k" }),
      args.queuePurge({ queue: "q" }),
      args.queueDelete({ queue: "q", ifEmpty: true }),
      args.basicQos({ prefetchCount: 10 }),
      args.basicConsume({ queue: "q", exclusive: true }, "tag"),
    ];
    for (const m of built) expect(decodeMethod(methodPayload(m)).name).toBe(m.name);
  });
});
