/**
 * Arrows only downward: every import in src/ and machines/ goes to the same layer or a lower one
 * (docs/development.md, "Layout"). Read from the sources, so a new upward import fails here.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..", "..");

/** Lowest first. A module may import from its own layer and the ones before it. */
const LAYERS: { name: string; holds: (path: string) => boolean }[] = [
  {
    name: "errors, faults, version, peers",
    holds: (p) => /^src\/(errors|faults|version|peers)\.ts$/.test(p),
  },
  { name: "transport", holds: (p) => p.startsWith("src/transport/") },
  { name: "codec", holds: (p) => p.startsWith("src/protocol/") },
  { name: "session", holds: (p) => p.startsWith("src/amqp/") },
  { name: "machines", holds: (p) => p.startsWith("machines/") },
  { name: "outbox", holds: (p) => p.startsWith("src/outbox/") },
  { name: "observability", holds: (p) => p.startsWith("src/observability/") },
  { name: "client", holds: (p) => p.startsWith("src/client/") },
  { name: "status", holds: (p) => p.startsWith("src/status/") },
  { name: "public API", holds: (p) => p === "src/index.ts" },
];

function layerOf(path: string): number {
  const i = LAYERS.findIndex((l) => l.holds(path));
  if (i < 0) throw new Error(`${path} belongs to no layer: add it to LAYERS`);
  return i;
}

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** Relative imports (and re-exports) of a module, as repository paths. */
function importsOf(path: string): string[] {
  const text = readFileSync(join(ROOT, path), "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/\bfrom\s+"(\.{1,2}\/[^"]+)"/g)) {
    out.push(relative(ROOT, resolve(ROOT, dirname(path), m[1]!)).replace(/\.js$/, ".ts"));
  }
  return out;
}

describe("layers", () => {
  const files = [...sources("src"), ...sources("machines")];

  it("every module belongs to a layer", () => {
    expect(files.length).toBeGreaterThan(40);
    for (const f of files) layerOf(f);
  });

  it("no module imports from a layer above its own", () => {
    const upward: string[] = [];
    for (const f of files) {
      for (const target of importsOf(f)) {
        if (layerOf(target) > layerOf(f))
          upward.push(`${f} (${LAYERS[layerOf(f)]!.name}) → ${target} (${LAYERS[layerOf(target)]!.name})`);
      }
    }
    expect(upward).toEqual([]);
  });

  it("the session layer has no import cycle between channel and connection", () => {
    expect(importsOf("src/amqp/channel.ts")).not.toContain("src/amqp/connection.ts");
  });
});
