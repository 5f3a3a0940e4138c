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
      socket = net.connect({ host: opts.host, port: opts.port }, ready);
    }
    socket.once("error", onError);
  });
}
