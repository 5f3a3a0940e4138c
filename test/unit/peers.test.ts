/**
 * Loading the optional peer packages (src/peers.ts) with Node's own resolution, rooted in a
 * temporary directory: where the package is absent, where it is there, and where it is there but
 * fails to load (a missing module of its own, a native build that throws).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MissingDependencyError } from "../../src/errors.js";
import { isPermanent } from "../../src/faults.js";
import { loadPeer } from "../../src/peers.js";

let root: string;

/** A CommonJS package `name` in `dir`/node_modules whose index.js is `source`. */
function pkg(dir: string, name: string, source: string): void {
  const at = join(dir, "node_modules", name);
  mkdirSync(at, { recursive: true });
  writeFileSync(join(at, "package.json"), JSON.stringify({ name, main: "index.js" }));
  writeFileSync(join(at, "index.js"), source);
}

/** Node's require, resolving from `dir` as it would from a module there. */
const requireFrom = (dir: string) => createRequire(join(dir, "service.js"));

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "warren-peers-"));
  mkdirSync(join(root, "empty"));
  pkg(join(root, "present"), "prom-client", "module.exports = { register: 'the registry' };");
  pkg(join(root, "broken-dep"), "better-sqlite3", "require('bindings-that-are-not-here');");
  pkg(join(root, "throws"), "better-sqlite3", "throw new Error('was compiled against a different Node.js');");
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("loadPeer", () => {
  it("a package that is not installed: MissingDependencyError naming it, the feature and the command", () => {
    let thrown: unknown;
    try {
      loadPeer("prom-client", requireFrom(join(root, "empty")));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(MissingDependencyError);
    const err = thrown as MissingDependencyError;
    expect(err).toMatchObject({ code: "MISSING_DEPENDENCY", packageName: "prom-client", recoverable: false });
    expect(err.message).toBe(
      "metrics (connect({ metrics }), serveMetrics()) needs the prom-client package, which is not installed: npm install prom-client",
    );
    expect((err.cause as { code?: string }).code).toBe("MODULE_NOT_FOUND");
    expect(isPermanent(err)).toBe(true);

    expect(() => loadPeer("better-sqlite3", requireFrom(join(root, "empty")))).toThrow(
      /the durable outbox .* needs the better-sqlite3 package, which is not installed: npm install better-sqlite3/,
    );
  });

  it("a package that is installed is loaded", () => {
    expect(loadPeer<{ register: string }>("prom-client", requireFrom(join(root, "present"))).register).toBe(
      "the registry",
    );
  });

  it("a package that is there but cannot load is not called missing: its own error is rethrown", () => {
    expect(() => loadPeer("better-sqlite3", requireFrom(join(root, "broken-dep")))).toThrow(
      /Cannot find module 'bindings-that-are-not-here'/,
    );
    expect(() => loadPeer("better-sqlite3", requireFrom(join(root, "throws")))).toThrow(
      "was compiled against a different Node.js",
    );
  });

  it("by default resolves from warren itself, where the development install has both", () => {
    expect(typeof loadPeer<{ Registry: unknown }>("prom-client").Registry).toBe("function");
  });
});
