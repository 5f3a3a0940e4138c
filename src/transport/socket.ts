/**
 * Opening the byte stream: plain TCP or TLS (verification on unless turned off),
 * bounded by a connect timeout. Errors come back as typed SocketError/TlsError
 * without any credential in them.
 */
import net from "node:net";
import tls from "node:tls";
import { ConnectTimeoutError, SocketError, TlsError } from "../errors.js";

/** TLS for amqps (`tls` option, or an amqps: URL's parameters); passed on to node:tls. */
export interface TlsOptions {
  /** Trusted CA certificates (PEM). Defaults to Node's bundled roots. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate (PEM), e.g. for SASL EXTERNAL. */
  cert?: string | Buffer;
  /** Client key (PEM). */
  key?: string | Buffer;
  /** Passphrase of an encrypted `key`. */
  passphrase?: string;
  /** Server name for SNI and certificate checking; defaults to the host (none for an IP address). */
  servername?: string;
  /** Verify the server's certificate (default true). Turning it off is for tests only. */
  rejectUnauthorized?: boolean;
}

export interface SocketOptions {
  host: string;
  port: number;
  tls?: TlsOptions | undefined;
  connectTimeout: number;
  noDelay?: boolean;
  /** Plain TCP only: read into this reader's buffer instead of a new buffer per read ('data' is then not emitted). */
  reader?: SocketReader | undefined;
}

/** Bytes read per read(2) into a SocketReader's buffer. */
export const READ_BUFFER_SIZE = 256 * 1024;

/**
 * One buffer that every read of a plain TCP socket lands in (node's `onread`), in place of a new
 * 64 KiB buffer per read: a 1 MiB message no longer leaves 16 read buffers behind for the garbage
 * collector, whose churn made malloc hand back fresh (page-faulting) memory. The bytes handed to
 * `onChunk` are valid only until it returns: whoever keeps any of them must copy them.
 */
export class SocketReader {
  readonly buffer: Buffer;
  /** Takes each read; until it is set, reads are held as copies. */
  private sink: ((chunk: Buffer) => void) | undefined;
  private held: Buffer[] = [];

  constructor(size = READ_BUFFER_SIZE) {
    this.buffer = Buffer.allocUnsafeSlow(size);
  }

  get onChunk(): ((chunk: Buffer) => void) | undefined {
    return this.sink;
  }

  set onChunk(fn: ((chunk: Buffer) => void) | undefined) {
    this.sink = fn;
    if (fn === undefined) return;
    const held = this.held;
    this.held = [];
    for (const b of held) fn(b);
  }

  /** node's onread callback. */
  readonly read = (n: number, buf: Uint8Array): boolean => {
    const chunk = (buf as Buffer).subarray(0, n);
    if (this.sink !== undefined) this.sink(chunk);
    else this.held.push(Buffer.from(chunk));
    return true;
  };
}

const TLS_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

export function toSocketError(err: Error & { code?: string }, where: string): SocketError {
  if (err.code && TLS_CODES.has(err.code)) {
    return new TlsError(
      `TLS verification of ${where} failed (${err.code}): ${err.message}. ${tlsAdvice(err.code)}`,
      {
        cause: err,
      },
    );
  }
  const code = err.code ? ` (${err.code})` : "";
  return new SocketError(`socket to ${where} failed${code}: ${err.message}`, { cause: err });
}

/** What to do about a certificate the client would not trust. */
function tlsAdvice(code: string): string {
  switch (code) {
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "Connect by a name the certificate carries, or set tls.servername to one.";
    case "CERT_HAS_EXPIRED":
      return "The broker's certificate has expired: renew it.";
    default:
      return "The certificate is not signed by a CA this client trusts: pass the CA that signed it as tls.ca (a wrong one fails the same way).";
  }
}

/** Connects; resolves once TCP (and TLS) are up. */
export function openSocket(opts: SocketOptions): Promise<net.Socket> {
  const where = `${opts.host}:${opts.port}`;
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(toSocketError(err, where));
    };
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectTimeoutError(`no connection to ${where} within ${opts.connectTimeout} ms`));
    }, opts.connectTimeout);
    const ready = () => {
      clearTimeout(timer);
      socket.off("error", onError);
      socket.setNoDelay(opts.noDelay ?? true);
      resolve(socket);
    };
    if (opts.tls) {
      const t = opts.tls;
      const o: tls.ConnectionOptions = {
        host: opts.host,
        port: opts.port,
        rejectUnauthorized: t.rejectUnauthorized ?? true,
      };
      const servername = t.servername ?? (net.isIP(opts.host) ? undefined : opts.host);
      if (servername !== undefined) o.servername = servername;
      if (t.ca !== undefined) o.ca = t.ca;
      if (t.cert !== undefined) o.cert = t.cert;
      if (t.key !== undefined) o.key = t.key;
      if (t.passphrase !== undefined) o.passphrase = t.passphrase;
      socket = tls.connect(o, ready);
    } else {
      const o: net.NetConnectOpts = { host: opts.host, port: opts.port };
      if (opts.reader !== undefined) o.onread = { buffer: opts.reader.buffer, callback: opts.reader.read };
      socket = net.connect(o, ready);
    }
    socket.once("error", onError);
  });
}
