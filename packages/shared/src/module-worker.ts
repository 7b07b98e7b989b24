import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * A worker thread running the module `name` beside `base` (the caller's
 * `import.meta.url`). Packages run as compiled JS, where the worker is the
 * .js file beside the caller. Tests run the TypeScript sources; a worker does
 * not inherit the test runner's transform, so there the .ts worker is booted
 * through tsx (a dev dependency).
 */
export function spawnModuleWorker(base: string, name: string, options: WorkerOptions = {}): Worker {
  if (!base.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, base), options);
  // The ESM build of tsx's API; its CommonJS build cannot be imported from an eval'd worker.
  const tsxApi = new URL('./api/index.mjs', pathToFileURL(createRequire(base).resolve('tsx/esm'))).href;
  const workerUrl = new URL(`./${name}.ts`, base).href;
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl)}); });`;
  return new Worker(boot, { ...options, eval: true });
}
