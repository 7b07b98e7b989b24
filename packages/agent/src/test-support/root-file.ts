import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A file with the shape of a TUF root.json, for config tests that never
 * start an agent: the config checks the shape, TUF checks signatures at start.
 */
export function rootFileForConfig(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'perch-root-')), 'root.json');
  writeFileSync(file, JSON.stringify({ signed: { _type: 'root', version: 1 }, signatures: [{ keyid: 'k', sig: 's' }] }));
  return file;
}
