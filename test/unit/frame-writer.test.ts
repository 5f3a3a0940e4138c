/**
 * The connection's writer: what one turn encodes leaves in one write at the turn's end, except a
 * turn encoding more than an arena, whose full arenas go out as they fill (so the broker reads
 * while the rest is encoded); bytes always in order, frames whole; drain waiters never run in the
 * middle of encoding a message.
 */
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { writePublish } from "../../src/protocol/content-writer.js";
import { FrameParser } from "../../src/protocol/frame.js";
import { FrameWriter } from "../../src/transport/writer.js";
import { nextTurn } from "../support/turn.js";

/** The part of a socket the writer uses; keeps what was written, and how much is "in the kernel". */
class FakeSocket {
  readonly writes: Buffer[] = [];
  destroyed = false;
  writableLength = 0;
  corked = 0;
  private drain: (() => void) | undefined;
  on(event: string, fn: () => void): this {
    if (event === "drain") this.drain = fn;
    return this;
  }
  write(b: Buffer): boolean {
    this.writes.push(Buffer.from(b));
    return true;
  }
  cork(): void {
    this.corked++;
  }
  uncork(): void {}
  emitDrain(): void {
    this.drain?.();
  }
  bytes(): Buffer {
    return Buffer.concat(this.writes);
  }
}

function setup(highWaterMark?: number) {
  const socket = new FakeSocket();
  const writer = new FrameWriter(
    socket as unknown as Socket,
    highWaterMark === undefined ? {} : { highWaterMark },
  );
  const publish = (i: number, size = 256) =>
    writePublish(writer, 1, 131_072, { exchange: "", routingKey: "q" }, Buffer.alloc(size, i % 256), {
      messageId: String(i),
    });
  return { socket, writer, publish };
}

/** The message ids of the publishes in `bytes`, in order, after checking every frame parses. */
function idsIn(bytes: Buffer): string[] {
  const ids: string[] = [];
  const p = new FrameParser((type, _channel, payload) => {
    // Content header: class, weight, body size (8), flags (2), then messageId first (short string).
    if (type === 2) ids.push(payload.subarray(15, 15 + payload[14]!).toString());
  }, 0);
  p.push(bytes);
  return ids;
}

describe("FrameWriter", () => {
  it("a turn's frames leave in one write at the end of the turn", async () => {
    const { socket, publish } = setup();
    for (let i = 0; i < 10; i++) publish(i);
    expect(socket.writes).toHaveLength(0);
    await nextTurn();
    expect(socket.writes).toHaveLength(1);
    expect(idsIn(socket.bytes())).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
  });

  it("a turn encoding more than an arena sends each full arena as it fills, in order", async () => {
    const { socket, publish } = setup();
    const n = 5000; // ~1.5 MiB: several 256 KiB arenas
    for (let i = 0; i < n; i++) publish(i);
    const during = socket.writes.length;
    expect(during).toBeGreaterThanOrEqual(4);
    await nextTurn();
    expect(socket.writes.length).toBe(during + 1);
    expect(idsIn(socket.bytes())).toEqual(Array.from({ length: n }, (_, i) => String(i)));
  });

  it("large bodies written by reference stay in order with the arena's frames", async () => {
    const { socket, publish } = setup();
    for (let i = 0; i < 40; i++) publish(i, i % 2 === 0 ? 200_000 : 100);
    await nextTurn();
    expect(idsIn(socket.bytes())).toEqual(Array.from({ length: 40 }, (_, i) => String(i)));
  });

  it("a drain waiter runs when the socket drains, never while a message is being encoded", async () => {
    const { socket, writer, publish } = setup(64 * 1024);
    let encoding = false;
    let ranWhileEncoding = false;
    let ran = 0;
    const more = () => {
      ran++;
      if (encoding) ranWhileEncoding = true;
    };
    // Enough to fill arenas: each full one is written out between two messages.
    for (let i = 0; i < 2000; i++) {
      encoding = true;
      publish(i);
      encoding = false;
      if (writer.needsDrain) writer.onDrain(more);
    }
    socket.writableLength = 1024 * 1024; // the kernel has not taken it yet
    await nextTurn();
    expect(ran).toBe(0);
    socket.writableLength = 0;
    socket.emitDrain();
    expect(ran).toBeGreaterThan(0);
    expect(ranWhileEncoding).toBe(false);
  });
});
