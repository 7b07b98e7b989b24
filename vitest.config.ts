import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two files at a time: most suites wait on brokers, agents and ffmpeg rather than compute, and
    // one at a time took over ten minutes; more would thrash a 2-core box.
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
  },
});
