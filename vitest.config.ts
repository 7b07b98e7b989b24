import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // End-to-end suites start brokers, agents and ffmpeg: keep the 2-core box from thrashing.
    fileParallelism: false,
    pool: 'forks',
  },
});
