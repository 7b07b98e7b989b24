import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

/** Where the demo keeps its state (default `.perch/` in the working directory) and where the agent CLI is. */
export function demoPaths(root: string = process.env.PERCH_DEMO_DIR ?? '.perch') {
  const base = resolve(root);
  return {
    base,
    controlPlaneData: join(base, 'control-plane'),
    model: join(base, 'demo', 'model'),
    video: join(base, 'demo', 'pet-park.mp4'),
    agentConfig: join(base, 'demo', 'agent.yaml'),
    agentData: join(base, 'agent'),
    trustedRoot: join(base, 'demo', 'root.json'),
    claimToken: join(base, 'demo', 'claim-token'),
  };
}

/** The agent's compiled CLI, found through its workspace package rather than a path into another package. */
export function agentCliPath(): string {
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve('@perch/agent/package.json');
  const pkg = require(pkgFile) as { bin?: Record<string, string> };
  const bin = pkg.bin?.['perch-agent'];
  if (!bin) throw new Error('@perch/agent has no perch-agent bin entry');
  return join(dirname(pkgFile), bin);
}
