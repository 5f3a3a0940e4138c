/** A 0-byte body frame is dispatched however the reads split it (streamed bodies included). */
import { describe, expect, it } from "vitest";
import { FrameParser } from "../../src/protocol/frame.js";
import { FRAME_BODY, FRAME_END } from "../../src/protocol/generated/spec.js";

const emptyBody = Buffer.from([FRAME_BODY, 0, 1, 0, 0, 0, 0, FRAME_END]);

describe("an empty body frame", () => {
  it.each([
    ["in one read", [8]],
    ["split 7+1", [7, 1]],
    ["split 3+4+1", [3, 4, 1]],
    ["split byte by byte", [1, 1, 1, 1, 1, 1, 1, 1]],
  ])("%s is dispatched once, with an empty payload", (_what, cuts) => {
    for (const streamBodies of [false, true]) {
      const got: { type: number; channel: number; size: number }[] = [];
      const p = new FrameParser(
        (type, channel, payload) => got.push({ type, channel, size: payload.length }),
        0,
        {
          streamBodies,
        },
      );
      let at = 0;
      for (const n of cuts) {
        p.push(emptyBody.subarray(at, at + n));
        at += n;
      }
      expect(got).toEqual([{ type: FRAME_BODY, channel: 1, size: 0 }]);
      expect(p.buffered).toBe(0);
    }
  });
});
