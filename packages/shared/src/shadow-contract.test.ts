import { describe, expect, it } from 'vitest';
import { desiredStateSchema, DEFAULT_SHADOW_SAMPLE_RATE } from './desired-state.js';
import { emptyHistogram, observe } from './histogram.js';
import { reportedStateSchema } from './reported-state.js';
import { signEnvelope, generateSigningKey, verifyEnvelope } from './signed-envelope.js';
import { shadowWindowSchema, telemetryWindowSchema } from './telemetry-window.js';

const sha = (c: string) => c.repeat(64);
const target = (version: string, c: string) => ({
  path: `models/colours/${version}.onnx`,
  length: 100,
  hashes: { sha256: sha(c) },
  custom: {
    name: 'colours',
    version,
    format: 'onnx',
    createdAt: '2025-01-01T00:00:00.000Z',
    metadata: {
      labels: ['red', 'green'],
      input: { name: 'input', width: 8, height: 8, layout: 'NCHW', channelOrder: 'RGB', resize: 'stretch' },
      normalization: { scale: 1, mean: [0, 0, 0], std: [1, 1, 1] },
      output: { name: 'probs', kind: 'probabilities' },
    },
  },
});
const desired = { _type: 'desired-state', spec_version: '1.0', version: 3, expires: '2099-01-01T00:00:00Z', deviceId: 'gate', generation: 3, issuedAt: '2025-01-01T00:00:00Z', active: target('1', 'a') };

describe('the shadow-mode contract', () => {
  it('reads a desired state from before shadow mode as naming no challenger', () => {
    const d = desiredStateSchema.parse(desired);
    expect(d.shadow).toBeUndefined();
    expect(d.shadowSampleRate).toBeUndefined();
    expect(DEFAULT_SHADOW_SAMPLE_RATE).toBe(0.25);
  });

  it('signs a challenger and its fractional sample rate with the rest of the state', () => {
    const withShadow = { ...desired, shadow: target('2', 'b'), shadowSampleRate: 0.1 };
    expect(desiredStateSchema.parse(withShadow).shadow?.hashes.sha256).toBe(sha('b'));
    const key = generateSigningKey();
    const env = signEnvelope(withShadow, [key]);
    expect(verifyEnvelope(env, [key.publicKey]).ok).toBe(true);
    expect(verifyEnvelope({ ...env, signed: { ...withShadow, shadowSampleRate: 0.5 } }, [key.publicKey]).ok).toBe(false);
    expect(desiredStateSchema.safeParse({ ...withShadow, shadowSampleRate: 0 }).success).toBe(false);
    expect(desiredStateSchema.safeParse({ ...withShadow, shadowSampleRate: 1.5 }).success).toBe(false);
  });

  it('takes windows and reported states with or without a shadow section; one whose counts do not add up is refused', () => {
    const window = { deviceId: 'gate', seq: 1, windowStart: 0, windowEnd: 10, model: null, cameras: [] };
    expect(telemetryWindowSchema.safeParse(window).success).toBe(true);
    const ms = emptyHistogram('latency-ms.v2');
    observe(ms, 3, 3);
    const shadow = {
      model: { name: 'colours', version: '2', sha256: sha('b') },
      sampleRate: 0.25,
      framesCompared: 3,
      agreed: 2,
      skippedBusy: 1,
      errors: 0,
      confusion: [
        { champion: 'red', challenger: 'red', count: 2 },
        { champion: 'red', challenger: 'green', count: 1 },
      ],
      confusionOverflow: 0,
      championInferenceMs: ms,
      challengerInferenceMs: ms,
      cameras: [{ cameraId: 'gate', framesCompared: 3, agreed: 2 }],
    };
    expect(telemetryWindowSchema.safeParse({ ...window, shadow }).success).toBe(true);
    expect(shadowWindowSchema.safeParse({ ...shadow, agreed: 4 }).success).toBe(false);
    expect(shadowWindowSchema.safeParse({ ...shadow, confusionOverflow: 1 }).success).toBe(false);

    const reported = { deviceId: 'gate', agentVersion: '1', at: 1, acceptedGeneration: 3, active: null, deployment: { phase: 'idle', generation: 3, target: null, at: 1 }, cameras: [] };
    expect(reportedStateSchema.safeParse(reported).success).toBe(true);
    const challenger = { generation: 3, target: shadow.model, phase: 'rejected', sampleRate: 0.25, reason: 'golden input: …', at: 1 };
    expect(reportedStateSchema.safeParse({ ...reported, shadow: challenger }).success).toBe(true);
    expect(reportedStateSchema.safeParse({ ...reported, shadow: { ...challenger, phase: 'sleeping' } }).success).toBe(false);
  });
});
