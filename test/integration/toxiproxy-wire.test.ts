/**
 * Wire-level details of the Toxiproxy-compatible server that toxiproxy-node-client does not show
 * (error bodies, headers, PATCH, key order, case-insensitive fields), over plain HTTP, and the
 * command line entry point.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { within } from "../support/async.js";
import { useToxiproxy } from "../support/toxiproxy.js";

const tp = useToxiproxy();

interface Answer {
  status: number;
  type: string | null;
  requestId: string | null;
  text: string;
  json: unknown;
}

async function call(
  method: string,
  path: string,
  body?: string,
  headers?: Record<string, string>,
): Promise<Answer> {
  const res = await fetch(`${tp.server.url}${path}`, {
    method,
    ...(body === undefined ? {} : { body }),
    ...(headers === undefined ? {} : { headers }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    requestId: res.headers.get("x-toxiproxy-request-id"),
    text,
    json,
  };
}

describe("toxiproxy wire format", () => {
  it("answers errors as {error,status} labelled text/plain, with a request id on every response", async () => {
    const missing = await call("GET", "/proxies/nope");
    expect(missing.status).toBe(404);
    expect(missing.type).toBe("text/plain; charset=utf-8");
    expect(missing.text).toBe('{"error":"proxy not found","status":404}\n');
    expect(missing.requestId).toMatch(/\S+/);

    const version = await call("GET", "/version");
    expect(version.status).toBe(200);
    expect(version.type).toBe("application/json;charset=utf-8");
    expect(version.text).toMatch(/^\{"version": "[^"]+"\}\n$/);
    expect(version.requestId).not.toBe(missing.requestId);

    const bad = await call("POST", "/proxies", "{not json");
    expect(bad.status).toBe(400);
    expect((bad.json as { error: string }).error).toMatch(/^bad request body/);
    expect((await call("POST", "/proxies", "")).status).toBe(400);
    expect((await call("POST", "/proxies", '{"name": 5, "upstream": "x:1"}')).status).toBe(400);

    const route = await call("GET", "/nothing/here");
    expect(route.status).toBe(404);
    expect(route.text).toBe("404 page not found\n");
    expect((await call("PUT", "/proxies")).status).toBe(405);
    expect((await call("GET", "/version", undefined, { "User-Agent": "Mozilla/5.0" })).status).toBe(403);
  });

  it("keeps the reference key order, matches field names case-insensitively and accepts PATCH", async () => {
    const created = await call(
      "POST",
      "/proxies",
      JSON.stringify({ NAME: "wire", Listen: "localhost:0", UpStream: "127.0.0.1:1", enabled: false }),
    );
    expect(created.status).toBe(201);
    expect(created.type).toBe("application/json");
    expect(Object.keys(created.json as object)).toEqual(["name", "listen", "upstream", "enabled", "toxics"]);
    expect(created.json).toMatchObject({ name: "wire", listen: "localhost:0", enabled: false, toxics: [] });

    const enabled = await call("PATCH", "/proxies/wire", JSON.stringify({ enabled: true }));
    expect(enabled.status).toBe(200);
    expect(enabled.json).toMatchObject({ upstream: "127.0.0.1:1", enabled: true });
    expect((enabled.json as { listen: string }).listen).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);

    const toxic = await call(
      "POST",
      "/proxies/wire/toxics",
      JSON.stringify({ Type: "latency", stream: "UpStream", attributes: { LATENCY: 5, unknown: "x" } }),
    );
    expect(toxic.status).toBe(200);
    expect(Object.keys(toxic.json as object)).toEqual(["attributes", "name", "type", "stream", "toxicity"]);
    expect(toxic.json).toEqual({
      attributes: { latency: 5, jitter: 0 },
      name: "latency_UpStream",
      type: "latency",
      stream: "UpStream",
      toxicity: 1,
    });
    const noop = await call("POST", "/proxies/wire/toxics", JSON.stringify({ type: "noop" }));
    expect(noop.json).toMatchObject({ name: "noop_downstream", attributes: {} });

    const patched = await call(
      "PATCH",
      "/proxies/wire/toxics/latency_UpStream",
      JSON.stringify({ toxicity: 0.5 }),
    );
    expect(patched.json).toMatchObject({ attributes: { latency: 5, jitter: 0 }, toxicity: 0.5 });
    expect(
      (await call("POST", "/proxies/wire/toxics", JSON.stringify({ type: "slicer", toxicity: "1" }))).status,
    ).toBe(400);

    const list = await call("GET", "/proxies/wire/toxics");
    expect((list.json as Array<{ name: string }>).map((t) => t.name)).toEqual([
      "latency_UpStream",
      "noop_downstream",
    ]);
    const all = await call("GET", "/proxies");
    expect(Object.keys(all.json as object)).toEqual(["wire"]);

    const reset = await call("POST", "/reset");
    expect(reset.status).toBe(204);
    expect(reset.text).toBe("");
    expect((await call("GET", "/proxies/wire/toxics")).json).toEqual([]);

    const deleted = await call("DELETE", "/proxies/wire");
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe("");
  });

  it("populate answers {proxies:[...]} and, on an error, the proxies already processed", async () => {
    const empty = await call("POST", "/populate", "[]");
    expect(empty.status).toBe(201);
    expect(empty.json).toEqual({ proxies: [] });

    const invalid = await call(
      "POST",
      "/populate",
      JSON.stringify([{ name: "a", upstream: "x:1" }, { name: "b" }]),
    );
    expect(invalid.status).toBe(400);
    expect(invalid.json).toEqual({
      error: "missing required field: upstream at proxy 2",
      status: 400,
      proxies: null,
    });
    expect((await call("GET", "/proxies")).json).toEqual({});

    const partial = await call(
      "POST",
      "/populate",
      JSON.stringify([
        { name: "ok", listen: "127.0.0.1:0", upstream: "127.0.0.1:1" },
        { name: "broken", listen: "127.0.0.1:99999", upstream: "127.0.0.1:1" },
      ]),
    );
    expect(partial.status).toBe(500);
    const body = partial.json as { error: string; status: number; proxies: Array<{ name: string }> };
    expect(body.status).toBe(500);
    expect(body.error).toMatch(/invalid port/);
    expect(body.proxies.map((p) => p.name)).toEqual(["ok"]);
    expect((await call("DELETE", "/proxies/ok")).status).toBe(204);
  });
});

describe("warren-toxiproxy command", () => {
  it("prints its URL, serves the API and exits 0 on SIGTERM", async () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", "chaos/toxiproxy/cli.ts", "--port", "0"], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const exit = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      // Its first line, or a failure naming why it exited without one (not a test timeout).
      const line = await within(
        Promise.race([
          once(createInterface({ input: child.stdout }), "line").then(([l]) => l as string),
          exit.then(([code, signal]) => {
            throw new Error(`exited (${code ?? signal}) before printing its URL:\n${stderr}`);
          }),
        ]),
        20_000,
        "the command's URL",
      );
      expect(line).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${line}/proxies`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({});
      child.kill("SIGTERM");
      const [code, signal] = await within(exit, 10_000, "the exit after SIGTERM");
      expect({ code, signal }).toEqual({ code: 0, signal: null });
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
