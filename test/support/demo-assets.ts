import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDemoModel, makePetParkVideo, type DemoModel, type PetParkVideo } from '@perch/control-plane';

/**
 * The demo model and a pet-park camera clip, built by the project's own code.
 * Cached in the temp folder by their parameters (the builders check their
 * cache keys), so test files share one build.
 */
export async function demoAssets(): Promise<{ model: DemoModel; video: PetParkVideo }> {
  const dir = join(tmpdir(), 'perch-test-assets');
  mkdirSync(dir, { recursive: true });
  const model = await buildDemoModel({ outDir: join(dir, 'model') });
  const video = await makePetParkVideo({ outPath: join(dir, 'pet-park.mp4'), seed: 7, scenes: 6, secondsPerScene: 2, fps: 10 });
  return { model, video };
}
