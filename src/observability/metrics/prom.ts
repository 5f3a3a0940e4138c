/**
 * prom-client, loaded on first use (an optional peer package: src/peers.ts): by the first client
 * created with `metrics`, or `serveMetrics()`. Without it installed those throw a
 * MissingDependencyError naming it; nothing else needs it.
 */
import type * as PromClient from "prom-client";
import type { Registry } from "prom-client";
import { loadPeer } from "../../peers.js";
import type { MetricsRegistry } from "./options.js";

/** The prom-client module. */
export type PromClientModule = typeof PromClient;

let loaded: PromClientModule | undefined;

/** prom-client, or a MissingDependencyError when it is not installed. */
export function promClient(): PromClientModule {
  loaded ??= loadPeer<PromClientModule>("prom-client");
  return loaded;
}

/** `registry` (a prom-client Registry, typed by shape in the public API), or the default one. */
export function promRegistry(registry: MetricsRegistry | undefined): Registry {
  return (registry as Registry | undefined) ?? promClient().register;
}
