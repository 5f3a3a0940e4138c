/**
 * Heartbeats (AMQP 0-9-1 §4.2.7) for a negotiated interval: a tick every half interval sends a
 * heartbeat frame when nothing else went out since the last tick, and declares the peer gone
 * after four silent ticks in a row (two intervals with no data at all, the spec's limit; any
 * frame counts, not only heartbeats).
 */

export interface HeartbeatHost {
  /** Bytes written so far (socket plus what is queued for it): unchanged means we were silent. */
  bytesOut(): number;
  /** Queues one heartbeat frame. */
  sendHeartbeat(): void;
  /** Two intervals without a byte from the peer. */
  peerSilent(): void;
}

/** Ticks without data after which the peer is given up: 4 half-intervals = 2 intervals. */
const SILENT_TICKS = 4;

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private readSinceTick = false;
  private silentTicks = 0;

  /** Starts ticking when `intervalSec` > 0 (0: heartbeats off). */
  constructor(
    readonly intervalSec: number,
    readonly host: HeartbeatHost,
  ) {
    if (intervalSec <= 0) return;
    let sent = host.bytesOut();
    this.timer = setInterval(
      () => {
        if (this.readSinceTick) {
          this.readSinceTick = false;
          this.silentTicks = 0;
        } else if (++this.silentTicks >= SILENT_TICKS) {
          this.stop();
          host.peerSilent();
          return;
        }
        if (host.bytesOut() === sent) host.sendHeartbeat();
        sent = host.bytesOut();
      },
      (intervalSec * 1000) / 2,
    );
  }

  /** Data arrived from the peer (called for every chunk read: a flag, nothing more). */
  received(): void {
    this.readSinceTick = true;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
