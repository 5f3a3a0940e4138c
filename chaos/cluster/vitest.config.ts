import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The cluster fail-over tests alone, one file at a time (they are in the default run too; they start
// three private RabbitMQ nodes, and are skipped without root or Debian's rabbitmq-server):
//   npx vitest run -c chaos/cluster/vitest.config.ts
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["chaos/cluster*.test.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 150_000,
  },
});
