import { describe, expect, it } from 'vitest';
import { parseRolloutSpec, parseRolloutSpecYaml, RolloutSpecError } from './rollout-spec.js';

const minimal = { model: { name: 'pets', version: '2.0.0' }, stages: [{ percent: 10, soakSeconds: 60 }, { percent: 100, soakSeconds: 0 }] };

function refusal(value: unknown): RolloutSpecError {
  try {
    parseRolloutSpec(value);
  } catch (err) {
    if (err instanceof RolloutSpecError) return err;
    throw err;
  }
  throw new Error('accepted');
}

describe('rollout spec', () => {
  it('fills every gate with its default', () => {
    const spec = parseRolloutSpec(minimal);
    expect(spec.mode).toBe('replace');
    expect(spec.onFail).toBe('rollback');
    expect(spec.start).toBe(true);
    expect(spec.target).toEqual({});
    expect(spec.shadow).toEqual({ sampleRate: 0.25, soakSeconds: 600 });
    expect(spec.gates).toEqual({
      minDevices: 1,
      minDevicePercent: 50,
      minFrames: 200,
      insufficientDataDeadlineSeconds: null,
      deployment: { maxFailurePercent: 10, maxFailures: null },
      errorRate: { max: 0.02 },
      latency: { maxP95Ratio: 1.5, minIncreaseMs: 2, baselineSeconds: 3600 },
      skippedFrames: { maxIncrease: 0.1 },
      predictionDrift: { maxJensenShannon: 0.1, chiSquareAlpha: 0.001, chiSquareMaxFrames: 1000 },
      shadowAgreement: { min: 0.9 },
    });
    // A parsed spec parses to itself: what is stored is what is re-read.
    expect(parseRolloutSpec(spec)).toEqual(spec);
  });

  it('lets a gate be switched off or tuned, keeping the other defaults', () => {
    const spec = parseRolloutSpec({ ...minimal, gates: { latency: null, errorRate: { max: 0.5 } } });
    expect(spec.gates.latency).toBeNull();
    expect(spec.gates.errorRate).toEqual({ max: 0.5 });
    expect(spec.gates.deployment).toEqual({ maxFailurePercent: 10, maxFailures: null });
    // The latency floor tuned alone keeps the ratio's default; a negative floor is refused.
    expect(parseRolloutSpec({ ...minimal, gates: { latency: { minIncreaseMs: 0.5 } } }).gates.latency).toEqual({ maxP95Ratio: 1.5, minIncreaseMs: 0.5, baselineSeconds: 3600 });
    expect(refusal({ ...minimal, gates: { latency: { minIncreaseMs: -1 } } }).field).toBe('gates.latency.minIncreaseMs');
  });

  it('refuses malformed specs, naming the field', () => {
    expect(refusal({ ...minimal, stages: [] }).field).toBe('stages');
    expect(refusal({ ...minimal, stages: [{ percent: 10, count: 3, soakSeconds: 1 }] }).message).toMatch(/percent or count, not both/);
    expect(refusal({ ...minimal, stages: [{ percent: 50, soakSeconds: 1 }, { percent: 10, soakSeconds: 1 }] }).message).toMatch(/cumulative/);
    expect(refusal({ ...minimal, stages: [{ percent: 10, soakSeconds: 1 }, { count: 20, soakSeconds: 1 }] }).message).toMatch(/every stage in percent/);
    expect(refusal({ ...minimal, stages: [{ percent: 120, soakSeconds: 1 }] }).field).toBe('stages.0.percent');
    expect(refusal({ ...minimal, mode: 'yolo' }).field).toBe('mode');
    expect(refusal({ ...minimal, onFail: 'ignore' }).field).toBe('onFail');
    expect(refusal({ ...minimal, target: { tags: ['has space'] } }).field).toBe('target.tags.0');
    expect(refusal({ ...minimal, gates: { errorRte: { max: 1 } } }).message).toMatch(/errorRte/);
    expect(refusal({ ...minimal, model: { name: 'pets' } }).field).toBe('model.version');
  });

  it('reads a YAML file', () => {
    const spec = parseRolloutSpecYaml(`
name: pets 2.0 to the park
model: { name: pets, version: 2.0.0 }
target:
  tags: [site-park]
  groups: [gateways]
mode: shadow-then-replace
shadow: { sampleRate: 0.5, soakSeconds: 300 }
stages:
  - { percent: 1, soakSeconds: 600 }
  - { percent: 10, soakSeconds: 1800 }
  - { percent: 50, soakSeconds: 3600 }
  - { percent: 100, soakSeconds: 0 }
gates:
  minFrames: 500
  latency: { maxP95Ratio: 1.3, minIncreaseMs: 5 }
onFail: pause
`);
    expect(spec.name).toBe('pets 2.0 to the park');
    expect(spec.stages.map((s) => s.percent)).toEqual([1, 10, 50, 100]);
    expect(spec.target).toEqual({ tags: ['site-park'], groups: ['gateways'] });
    expect(spec.gates.latency).toEqual({ maxP95Ratio: 1.3, minIncreaseMs: 5, baselineSeconds: 3600 });
    expect(spec.onFail).toBe('pause');
    expect(() => parseRolloutSpecYaml('model: [unclosed')).toThrow(/not valid YAML/);
  });
});
