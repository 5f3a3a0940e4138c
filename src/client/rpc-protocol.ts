/**
 * How warren's request/reply travels on the wire: direct reply-to, and the error reply (a header
 * holding { name, message, code? }) that a server sends for a handler that threw and a client
 * turns back into an RpcRemoteError.
 */
import { RpcRemoteError, WarrenError } from "../errors.js";
import type { FieldTable } from "../protocol/table.js";

/** The pseudo-queue of direct reply-to: consume it (noAck) and name it as replyTo on the same channel. */
export const DIRECT_REPLY_TO = "amq.rabbitmq.reply-to";
/** The header of an error reply: a table { name, message, code? }. */
export const RPC_ERROR_HEADER = "warren-error";

function text(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("utf8");
  return undefined;
}

/** The RpcRemoteError an error reply's header stands for. */
export function remoteError(header: unknown): RpcRemoteError {
  const t = header !== null && typeof header === "object" ? (header as Record<string, unknown>) : {};
  return new RpcRemoteError({
    name: text(t["name"]) ?? "Error",
    message: text(t["message"]) ?? text(header) ?? "",
    code: text(t["code"]),
  });
}

/** The error reply's table: name, message and (for warren's errors, or any error with one) code. */
export function errorTable(err: unknown): FieldTable {
  const e = err instanceof Error ? err : undefined;
  const t: FieldTable = {
    name: e?.name ?? "Error",
    message: e?.message ?? String(err),
  };
  const code = err instanceof WarrenError ? err.code : (err as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") t["code"] = code;
  return t;
}
