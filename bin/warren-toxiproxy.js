#!/usr/bin/env node
// Starts the Toxiproxy-compatible fault proxy compiled by `npm run build` (chaos/toxiproxy/cli.ts).
import { existsSync } from "node:fs";

const cli = new URL("../dist/chaos/toxiproxy/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    "warren-toxiproxy: dist/chaos/toxiproxy/cli.js is missing; run `npm run build` first\n",
  );
  process.exit(1);
}
await import(cli.href);
