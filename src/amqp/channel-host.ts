/**
 * What a Channel needs from its connection, and nothing more: the frame sink it writes
 * publishes and acks into, sending a method, frame_max, two options, the method-call
 * instrumentation, and handing its number back. Connection implements it; tests can fake it.
 */
import type { FrameSink } from "../protocol/content-writer.js";
import type { MethodInput } from "../protocol/generated/spec.js";

/** Instrumentation of synchronous method calls (e.g. `queue.declare` → `queue.declare-ok`). */
export interface MethodCallObserver {
  /** A synchronous method was sent and waits for its reply. */
  methodSent?(method: string): void;
  /** Its reply came, `seconds` after it was sent. */
  methodReplied?(method: string, seconds: number): void;
  /** No reply within methodTimeout: the channel was given up. */
  methodTimedOut?(method: string): void;
}

/** The connection as its channels see it. */
export interface ChannelHost {
  /** The connection's write buffer; `needsDrain` is its backpressure signal. */
  readonly writer: FrameSink & { readonly needsDrain: boolean; onDrain(fn: () => void): void };
  /** The negotiated frame_max (0: no limit). */
  readonly frameMax: number;
  /** methodTimeout (ms, 0: none) and maxMessageSize (bytes) of the connection. */
  readonly options: { readonly methodTimeout: number; readonly maxMessageSize: number };
  /**
   * The frames handed to the channel are views of a read buffer that the next read overwrites
   * (plain TCP): a body that is kept must be copied. Absent or false: they stay valid.
   */
  readonly transient?: boolean;
  /** Instrumentation of synchronous method calls, when metrics are on. */
  readonly observer: MethodCallObserver | undefined;
  /** Sends one method frame on `channel`; throws when the connection is closed. */
  send(channel: number, method: MethodInput): void;
  /** The channel is done with its number (after close-ok when `awaitingCloseOk`). */
  releaseChannel(id: number, awaitingCloseOk: boolean): void;
}
