/**
 * The status server's token: `Authorization: Bearer <token>`, or `?token=<token>` (a browser's
 * EventSource cannot set headers). Compared in constant time (SHA-256 digests of both sides).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

/** A check of requests against `token`; without one every request passes. */
export function tokenCheck(token: string | undefined): (req: IncomingMessage, url: URL) => boolean {
  if (token === undefined) return () => true;
  const expected = digest(token);
  return (req, url) => {
    const header = req.headers.authorization;
    const bearer = header !== undefined ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
    const given = bearer ?? url.searchParams.get("token") ?? undefined;
    return given !== undefined && timingSafeEqual(digest(given), expected);
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}
