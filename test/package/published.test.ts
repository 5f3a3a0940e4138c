/**
 * warren as a service installs it: built as published (tsconfig.build.json, into the package's
 * own directory beside a copy of package.json) into a temporary node_modules that holds only its
 * dependencies and required peer dependencies, as `npm install warren` leaves it. No prom-client,
 * no better-sqlite3 (optional peers).
 *
 * - its types compile in a strict service (skipLibCheck false, exactOptionalPropertyTypes):
 *   no xstate or prom-client types leak into them (fixture/consumer.ts);
 * - it loads, and metrics and the outbox fail at once with MissingDependencyError naming the
 *   package to install, in a real Node process.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "..", "..");
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");

interface Manifest {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}
const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Manifest;

/** What `npm install warren` puts beside it: its dependencies and its required peers. */
function installedWithIt(): string[] {
  const optional = manifest.peerDependenciesMeta ?? {};
  const peers = Object.keys(manifest.peerDependencies ?? {}).filter((p) => optional[p]?.optional !== true);
  return [...Object.keys(manifest.dependencies ?? {}), ...peers];
}

let service: string;

beforeAll(async () => {
  service = mkdtempSync(join(tmpdir(), "warren-service-"));
  const pkg = join(service, "node_modules", "warren");
  mkdirSync(pkg, { recursive: true });
  cpSync(join(ROOT, "package.json"), join(pkg, "package.json"));
  await run(process.execPath, [TSC, "-p", join(ROOT, "tsconfig.build.json"), "--outDir", join(pkg, "dist")]);
  // The service's own: @types/node, as a Node service has.
  for (const name of [...installedWithIt(), "@types/node"]) {
    mkdirSync(dirname(join(service, "node_modules", name)), { recursive: true });
    symlinkSync(join(ROOT, "node_modules", name), join(service, "node_modules", name), "dir");
  }
  writeFileSync(
    join(service, "package.json"),
    JSON.stringify({ name: "service", type: "module", private: true }),
  );
}, 180_000);

afterAll(() => {
  if (service) rmSync(service, { recursive: true, force: true });
});

describe("warren as installed (no optional peers)", () => {
  it("installs with it only xstate and @opentelemetry/api", () => {
    expect(installedWithIt().sort()).toEqual(["@opentelemetry/api", "xstate"]);
    expect(manifest.peerDependenciesMeta).toEqual({
      "better-sqlite3": { optional: true },
      "prom-client": { optional: true },
    });
  });

  it("its types compile in a strict service: skipLibCheck false, exactOptionalPropertyTypes", async () => {
    cpSync(join(import.meta.dirname, "fixture", "consumer.ts"), join(service, "consumer.ts"));
    writeFileSync(
      join(service, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          skipLibCheck: false,
          noEmit: true,
          types: ["node"],
        },
        files: ["consumer.ts"],
      }),
    );
    const result = await run(process.execPath, [TSC, "-p", service]).then(
      () => "",
      (e: { stdout?: string }) => e.stdout ?? String(e),
    );
    expect(result).toBe("");
  }, 120_000);

  it("loads; metrics and the outbox throw MissingDependencyError naming the package", async () => {
    const script = join(service, "probe.mjs");
    writeFileSync(
      script,
      `import * as warren from "warren";
const out = {};
const seen = (e) => ({ name: e.name, code: e.code, packageName: e.packageName, message: e.message });
try { warren.connect({ url: "amqp://127.0.0.1:1", metrics: true }); } catch (e) { out.metrics = seen(e); }
try { await warren.serveMetrics({ port: 0 }); } catch (e) { out.serveMetrics = seen(e); }
try { warren.Outbox.open({ path: ${JSON.stringify(join(service, "outbox.db"))} }); } catch (e) { out.outbox = seen(e); }
out.loaded = typeof warren.connect;
console.log(JSON.stringify(out));
`,
    );
    const { stdout } = await run(process.execPath, [script], { cwd: service });
    const out = JSON.parse(stdout) as Record<
      string,
      { name: string; code: string; packageName: string; message: string }
    >;
    expect(out["loaded"]).toBe("function");
    for (const [key, pkg] of [
      ["metrics", "prom-client"],
      ["serveMetrics", "prom-client"],
      ["outbox", "better-sqlite3"],
    ] as const) {
      expect(out[key]).toMatchObject({
        name: "MissingDependencyError",
        code: "MISSING_DEPENDENCY",
        packageName: pkg,
      });
      expect(out[key]?.message).toContain(`npm install ${pkg}`);
    }
  }, 60_000);
});
