/**
 * The optional peer packages (package.json `peerDependenciesMeta`): loaded when a feature first
 * needs them, never when warren is imported, so a service that uses neither installs neither
 * (better-sqlite3 builds a native module). Both are CommonJS packages, so `require` gives the very
 * module instance an application's own `import` of them gets: prom-client's default registry is
 * the application's.
 */
import { createRequire } from "node:module";
import { MissingDependencyError } from "./errors.js";

/** Resolves and loads a package, as Node's `require` does. */
export type RequireFn = (id: string) => unknown;

/** Resolving from warren's own files, as its static imports would. */
const requireHere: RequireFn = createRequire(import.meta.url);

/** The optional peers, and what needs each (for the error naming the package to install). */
export const OPTIONAL_PEERS = {
  "prom-client": "metrics (connect({ metrics }), serveMetrics())",
  "better-sqlite3": "the durable outbox (client.publisher({ outbox }))",
} as const;

/** An optional peer package's name. */
export type OptionalPeer = keyof typeof OPTIONAL_PEERS;

/**
 * The package `name`, or a MissingDependencyError naming it and how to install it when it is not
 * installed. Any other failure (a package that is there but cannot load, e.g. a native module built
 * for another Node version) is rethrown as it is: "install it" would not be the cure.
 */
export function loadPeer<T>(name: OptionalPeer, require: RequireFn = requireHere): T {
  try {
    return require(name) as T;
  } catch (e) {
    if (!isNotFound(e, name)) throw e;
    throw new MissingDependencyError(
      `${OPTIONAL_PEERS[name]} needs the ${name} package, which is not installed: npm install ${name}`,
      { packageName: name, cause: e },
    );
  }
}

/** Node could not find `name` itself (not a module that `name` requires in turn). */
function isNotFound(e: unknown, name: string): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  return (
    err?.code === "MODULE_NOT_FOUND" &&
    typeof err.message === "string" &&
    err.message.startsWith(`Cannot find module '${name}'`)
  );
}
