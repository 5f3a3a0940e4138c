/** Raw AMQP frames for parser tests: built by hand, independent of the code under test. */

/** One frame: type, channel, size, payload, and the frame-end byte (0xCE unless a test breaks it). */
export function frame(type: number, channel: number, payload: Uint8Array, end = 0xce): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  b[0] = type;
  b.writeUInt16BE(channel, 1);
  b.writeUInt32BE(payload.length, 3);
  b.set(payload, 7);
  b[b.length - 1] = end;
  return b;
}

/** `n` bytes of a recognisable pattern, different per seed: a body whose bytes can be checked. */
export const pattern = (n: number, seed: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));
