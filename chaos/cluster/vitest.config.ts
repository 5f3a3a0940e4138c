import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The cluster fail-over tests start three private RabbitMQ nodes (root and Debian's rabbitmq-server
// needed), so they are not in the default run:  npx vitest run -c chaos/cluster/vitest.config.ts
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
