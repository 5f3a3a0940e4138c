import { defineConfig } from "vitest/config";

// Integration tests talk to a real RabbitMQ broker (see scripts/broker.sh), so test files run in
// separate processes and at most two at a time. test/ and the chaos suite (chaos/) are collected;
// bench/ is run by its own script, never as tests.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "chaos/**/*.test.ts"],
    pool: "forks",
    fileParallelism: true,
    minWorkers: 1,
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
