/**
 * The clients of /events (Server-Sent Events) and what each may cost. An event is written to
 * every client whose socket has drained to at most `maxBuffered` bytes; a client past that bound
 * (it stopped reading, or its network is too slow for the stream) is dropped: its response is
 * destroyed, so a slow or vanished reader holds at most the bound plus one event, and the browser's
 * EventSource reconnects by itself once it can keep up.
 */

/** What the hub needs of a response (node:http's ServerResponse, or a fake in tests). */
export interface SseClient {
  /** Bytes written and not yet handed to the socket. */
  readonly writableLength: number;
  write(chunk: string): boolean;
  destroy(): void;
}

/** Default bound on the bytes buffered for one client: 256 KiB. */
export const DEFAULT_MAX_BUFFERED = 256 * 1024;

/** One event in the text/event-stream format (the JSON has no raw newline: one data line). */
export function sseChunk(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export class SseHub {
  private readonly clients = new Set<SseClient>();
  /** Clients dropped for being over the bound since the start. */
  dropped = 0;

  /** `onSize` is told the number of clients whenever it changes. */
  constructor(
    readonly maxBuffered = DEFAULT_MAX_BUFFERED,
    private readonly onSize: (size: number) => void = () => undefined,
  ) {}

  get size(): number {
    return this.clients.size;
  }

  /** Adds a client (its headers written already); the returned function removes it (idempotent). */
  add(client: SseClient): () => void {
    this.clients.add(client);
    this.onSize(this.clients.size);
    return () => this.remove(client);
  }

  /** Writes an event to every client within the bound and drops the others. */
  send(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const chunk = sseChunk(event, data);
    for (const c of [...this.clients]) {
      if (c.writableLength > this.maxBuffered) {
        this.dropped++;
        this.remove(c);
        c.destroy();
      } else c.write(chunk);
    }
  }

  /** Ends every stream. */
  close(): void {
    for (const c of [...this.clients]) {
      this.remove(c);
      c.destroy();
    }
  }

  private remove(client: SseClient): void {
    if (this.clients.delete(client)) this.onSize(this.clients.size);
  }
}
