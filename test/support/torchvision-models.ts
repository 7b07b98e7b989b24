import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('./export-torchvision-model.py', import.meta.url));
/** Debian's python, which sees python3-torch; the first python3 on PATH may not. */
const PYTHON = '/usr/bin/python3';

/**
 * An ONNX file exported by PyTorch from a torchvision architecture nobody in
 * Perch designed (random weights: nothing is downloaded). Cached by name and
 * size in the temp folder.
 */
export async function torchvisionModel(name: string, size: number, classes: number): Promise<string> {
  const dir = join(tmpdir(), 'perch-torchvision');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${name}-${size}-${classes}.onnx`);
  if (existsSync(out)) return out;
  try {
    await run(PYTHON, [SCRIPT, name, `${out}.tmp`, String(size), String(classes)], { timeout: 120_000 });
  } catch (err) {
    throw new Error(`exporting ${name} with PyTorch failed (Debian's python3-torch and python3-torchvision must be installed; .ci/run installs them): ${(err as Error).message}`);
  }
  const { rename } = await import('node:fs/promises');
  await rename(`${out}.tmp`, out);
  return out;
}
