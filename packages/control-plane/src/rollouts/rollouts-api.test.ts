import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { signedDesiredStateSchema } from '@perch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, startApiSite, type ApiSite } from '../test-support/api-site.js';
import { registerTiny } from './test-support/tiny-classifier.js';

/**
 * The rollout API on a real control plane (HTTP, SQLite, broker): specs
 * refused with the field at fault, overlapping targets refused naming the
 * rollout in the way, roles, operator actions and the history they leave,
 * the desired-model route's challenger, and that route refusing a device
 * an active rollout manages unless forced (which releases the device for
 * good). No device is connected: what the engine issues waits, retained,
 * for them.
 */
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const run = promisify(execFile);

let site: ApiSite;
let operator: string;
let viewer: string;

const stages = [{ percent: 50, soakSeconds: 3600 }, { percent: 100, soakSeconds: 3600 }];
const spec = (over: Record<string, unknown> = {}) => ({ model: { name: 'pets', version: '2.0.0' }, stages, ...over });

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as T;
}

interface RolloutView {
  id: string;
  state: string;
  stage: { index: number; of: number };
  phase: string;
  reason: string | null;
  devices: { total: number; replaced: number; restored: number; pending: number; released: number };
}

const desiredVersion = (id: string) => site.cp.services.desired.get(id)?.envelope.signed.active?.custom.version ?? null;

beforeAll(async () => {
  site = await startApiSite({ rollouts: { tickSeconds: 0.2 } });
  const { registry } = site.cp.services;
  await registerTiny(registry, 'pets', '1.0.0', 1);
  await registerTiny(registry, 'pets', '2.0.0', 2);
  for (const i of [1, 2, 3]) await site.cp.issueDeviceCredentials(`north-${i}`, { groups: ['north'], tags: i === 1 ? ['lab'] : [] });
  for (const i of [1, 2, 3]) await site.cp.issueDeviceCredentials(`south-${i}`, { groups: ['south'] });
  operator = (await createToken(site, 'release-bot', 'operator')).token;
  viewer = (await createToken(site, 'dashboard', 'viewer')).token;
});

afterAll(async () => {
  await site?.stop();
});

describe('rollout API', () => {
  it('refuses bad specs with the field at fault, unknown models and empty targets', async () => {
    const bad = await json<{ error: { code: string; field?: string } }>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ stages: [{ percent: 150, soakSeconds: 1 }] })), 400);
    expect(bad.error).toMatchObject({ code: 'validation_failed', field: 'stages.0.percent' });
    const unknown = await json<{ error: { code: string } }>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ model: { name: 'pets', version: '9.9.9' } })), 404);
    expect(unknown.error.code).toBe('unknown_model_version');
    const empty = await json<{ error: { code: string } }>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ target: { groups: ['nowhere'] } })), 422);
    expect(empty.error.code).toBe('empty_target');
  });

  it('lets viewers read and operators change', async () => {
    expect((await site.call(viewer, 'GET', '/api/v1/rollouts')).status).toBe(200);
    expect((await site.call(viewer, 'POST', '/api/v1/rollouts', spec({ target: { groups: ['north'] } }))).status).toBe(403);
    expect((await site.call(null, 'GET', '/api/v1/rollouts')).status).toBe(401);
  });

  it('starts a rollout, refuses an overlapping one naming it, and accepts a disjoint one', async () => {
    const north = await json<RolloutView>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ name: 'north first', target: { groups: ['north'] } })), 201);
    expect(north).toMatchObject({ state: 'running', stage: { index: 0, of: 2 }, phase: 'replace' });

    // The lab tag selects north-1, which the north rollout holds.
    const clash = await json<{ error: { code: string; message: string } }>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ target: { tags: ['lab'] } })), 409);
    expect(clash.error.code).toBe('rollout_conflict');
    expect(clash.error.message).toContain(north.id);
    expect(clash.error.message).toContain('north first');
    expect(clash.error.message).toContain('north-1');

    const south = await json<RolloutView>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ target: { groups: ['south'] }, start: false })), 201);
    expect(south.state).toBe('draft');

    // Half of the north group (two of three, or all three when the third's hash is under 0.5 too), each issued the candidate, signed.
    await expect.poll(async () => (await json<RolloutView>(await site.call(viewer, 'GET', `/api/v1/rollouts/${north.id}`), 200)).devices.replaced).toBeGreaterThanOrEqual(2);
    await expect.poll(() => site.cp.services.rollouts.store.assignments(north.id).every((a) => a.status === 'replaced')).toBe(true);
    const candidate = site.cp.services.versions.get('pets', '2.0.0')!;
    const held = site.cp.services.rollouts.store.assignments(north.id);
    expect(held.map((a) => a.deviceId).every((d) => d.startsWith('north-'))).toBe(true);
    for (const a of held) {
      const desired = signedDesiredStateSchema.parse(site.cp.services.desired.get(a.deviceId)!.envelope);
      expect(desired.signed.active?.hashes.sha256).toBe(candidate.sha256);
    }
    for (const id of ['south-1', 'south-2', 'south-3']) expect(site.cp.services.desired.get(id)).toBeNull();
  });

  it('pauses, resumes, promotes and rolls back on operator request, each step in the history', async () => {
    const list = await json<{ rollouts: RolloutView[] }>(await site.call(viewer, 'GET', '/api/v1/rollouts'), 200);
    const north = list.rollouts.find((r) => r.state === 'running')!;
    const act = (action: string, body?: unknown) => site.call(operator, 'POST', `/api/v1/rollouts/${north.id}/${action}`, body);

    expect((await json<RolloutView>(await act('pause', { reason: 'lunch' }), 200)).state).toBe('paused');
    expect((await json<{ error: { code: string } }>(await act('pause'), 409)).error.code).toBe('invalid_rollout_state');
    expect((await json<RolloutView>(await act('resume'), 200)).state).toBe('running');
    const promoted = await json<RolloutView>(await act('promote'), 200);
    expect(promoted.stage.index).toBe(1);
    await expect.poll(async () => (await json<RolloutView>(await site.call(viewer, 'GET', `/api/v1/rollouts/${north.id}`), 200)).devices.replaced).toBe(3);

    expect((await json<RolloutView>(await act('rollback', { reason: 'changed our mind' }), 200)).state).toBe('rolling-back');
    // Nobody is online to report: the devices are restored in their desired states and the rollout is done with them.
    await expect.poll(async () => (await json<RolloutView>(await site.call(viewer, 'GET', `/api/v1/rollouts/${north.id}`), 200)).state).toBe('rolled-back');
    for (const id of ['north-1', 'north-2', 'north-3']) expect(site.cp.services.desired.get(id)?.envelope.signed.active).toBeNull();

    const detail = await json<{ events: { type: string; actor: string | null; reason: string | null }[]; stages: { status: string; devices: number }[] }>(
      await site.call(viewer, 'GET', `/api/v1/rollouts/${north.id}`),
      200,
    );
    expect(detail.events.map((e) => e.type)).toEqual(['created', 'stage-started', 'paused', 'resumed', 'promoted', 'rolling-back', 'rolled-back']);
    expect(detail.events.find((e) => e.type === 'paused')).toMatchObject({ reason: 'lunch', actor: expect.stringContaining('release-bot') });
    const first = detail.stages[0]!.devices;
    expect(first).toBeGreaterThanOrEqual(2);
    expect(detail.stages.map((s) => s.devices)).toEqual([first, 3 - first]);

    // The north group is free again: the draft on the south starts, and a new rollout on the lab tag is welcome.
    const drafts = (await json<{ rollouts: RolloutView[] }>(await site.call(viewer, 'GET', '/api/v1/rollouts'), 200)).rollouts.filter((r) => r.state === 'draft');
    expect((await json<RolloutView>(await site.call(operator, 'POST', `/api/v1/rollouts/${drafts[0]!.id}/resume`), 200)).state).toBe('running');
    const lab = await json<RolloutView>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ target: { tags: ['lab'] } })), 201);
    expect((await json<RolloutView>(await site.call(operator, 'POST', `/api/v1/rollouts/${lab.id}/abort`), 200)).state).toBe('aborted');
    expect((await site.call(operator, 'POST', `/api/v1/rollouts/${lab.id}/resume`)).status).toBe(409);
    expect((await site.call(operator, 'POST', '/api/v1/rollouts/ro-0000000000000000/pause')).status).toBe(404);
  });

  it('sets a challenger beside the champion through the desired-model route', async () => {
    await site.cp.issueDeviceCredentials('bench-1');
    const res = await json<{ generation: number; shadow: unknown }>(
      await site.call(operator, 'PUT', '/api/v1/devices/bench-1/desired-model', { model: { name: 'pets', version: '1.0.0' }, shadow: { name: 'pets', version: '2.0.0' }, shadowSampleRate: 0.5 }),
      200,
    );
    expect(res.shadow).toEqual({ name: 'pets', version: '2.0.0' });
    const signed = signedDesiredStateSchema.parse(site.cp.services.desired.get('bench-1')!.envelope).signed;
    expect(signed.active?.custom.version).toBe('1.0.0');
    expect(signed.shadow?.custom.version).toBe('2.0.0');
    expect(signed.shadowSampleRate).toBe(0.5);
    const same = await json<{ error: { field?: string } }>(await site.call(operator, 'PUT', '/api/v1/devices/bench-1/desired-model', { model: { name: 'pets', version: '1.0.0' }, shadow: { name: 'pets', version: '1.0.0' } }), 400);
    expect(same.error.field).toBe('shadow');
    expect((await site.call(operator, 'PUT', '/api/v1/devices/bench-1/desired-model', { model: null, shadow: { name: 'pets', version: '1.0.0' } })).status).toBe(400);
    // Without a challenger the state is as before shadow mode.
    await json(await site.call(operator, 'PUT', '/api/v1/devices/bench-1/desired-model', { model: { name: 'pets', version: '1.0.0' } }), 200);
    expect(site.cp.services.desired.get('bench-1')!.envelope.signed.shadow).toBeUndefined();
  });

  it('starts a rollout from a YAML file with the CLI, and names a bad field before sending anything', async () => {
    await site.cp.issueDeviceCredentials('cli-1', { tags: ['cli'] });
    const tokenFile = join(site.dir, 'operator-token');
    writeFileSync(tokenFile, operator);
    const file = join(site.dir, 'rollout.yaml');
    writeFileSync(file, ['name: from yaml', 'model: { name: pets, version: 2.0.0 }', 'target: { tags: [cli] }', 'stages:', '  - { count: 1, soakSeconds: 60 }'].join('\n'));
    const opts = ['--api', `${site.base}/api/v1`, '--token-file', tokenFile];
    const { stdout } = await run(process.execPath, [CLI, 'rollout', 'apply', file, ...opts], { env: { ...process.env, PERCH_DATA_DIR: site.dir } });
    const created = JSON.parse(stdout) as RolloutView;
    expect(created).toMatchObject({ name: 'from yaml', state: 'running' });
    const shown = JSON.parse((await run(process.execPath, [CLI, 'rollout', 'show', created.id, ...opts], { env: { ...process.env, PERCH_DATA_DIR: site.dir } })).stdout) as { events: { type: string }[] };
    expect(shown.events[0]?.type).toBe('created');

    writeFileSync(file, ['model: { name: pets, version: 2.0.0 }', 'stages:', '  - { percent: 10, soakSecs: 60 }'].join('\n'));
    const failed = await run(process.execPath, [CLI, 'rollout', 'apply', file, ...opts], { env: { ...process.env, PERCH_DATA_DIR: site.dir } }).catch((err: { stderr: string; code: number }) => err);
    expect('code' in failed && failed.code).toBe(1);
    expect((failed as { stderr: string }).stderr).toMatch(/soakSecs/);
    // Refused by the control plane: the error's code and message come through.
    writeFileSync(file, ['model: { name: pets, version: 2.0.0 }', 'target: { tags: [cli] }', 'stages:', '  - { count: 1, soakSeconds: 1 }'].join('\n'));
    const clash = await run(process.execPath, [CLI, 'rollout', 'apply', file, ...opts], { env: { ...process.env, PERCH_DATA_DIR: site.dir } }).catch((err: { stderr: string }) => err);
    expect((clash as { stderr: string }).stderr).toMatch(new RegExp(`409 rollout_conflict: rollout ${created.id}`));
  });

  it('refuses a desired model set by hand on a device an active rollout manages, naming the rollout, unless forced', async () => {
    for (const i of [1, 2, 3]) await site.cp.issueDeviceCredentials(`east-${i}`, { groups: ['east'] });
    const east = await json<RolloutView>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ name: 'east', target: { groups: ['east'] }, stages: [{ percent: 100, soakSeconds: 3600 }] })), 201);
    await expect.poll(() => site.cp.services.rollouts.store.assignments(east.id).filter((a) => a.status === 'replaced').length).toBe(3);
    const before = site.cp.services.desired.get('east-1')!.generation;
    const byHand = (device: string, body: Record<string, unknown>) => site.call(operator, 'PUT', `/api/v1/devices/${device}/desired-model`, { model: { name: 'pets', version: '1.0.0' }, ...body });

    // Refused in the one error shape, naming the rollout; nothing issued.
    const refused = await json<{ error: { code: string; message: string } }>(await byHand('east-1', {}), 409);
    expect(refused.error.code).toBe('device_in_rollout');
    expect(refused.error.message).toContain(east.id);
    expect(refused.error.message).toContain('"force": true');
    expect(site.cp.services.desired.get('east-1')!.generation).toBe(before);
    // A paused rollout still manages its devices.
    await json(await site.call(operator, 'POST', `/api/v1/rollouts/${east.id}/pause`), 200);
    expect((await byHand('east-1', { force: false })).status).toBe(409);
    await json(await site.call(operator, 'POST', `/api/v1/rollouts/${east.id}/resume`), 200);
    // A forced change to a model that does not exist releases nothing.
    expect((await site.call(operator, 'PUT', '/api/v1/devices/east-1/desired-model', { model: { name: 'pets', version: '9.9.9' }, force: true })).status).toBe(404);
    expect(site.cp.services.rollouts.store.assignment(east.id, 'east-1')?.releasedAt).toBeNull();

    // Forced: applied, and the device is released, which the rollout shows and its history records.
    const forced = await json<{ generation: number; releasedFrom: string[] }>(await byHand('east-1', { force: true }), 200);
    expect(forced.releasedFrom).toEqual([east.id]);
    expect(forced.generation).toBeGreaterThan(before);
    expect(desiredVersion('east-1')).toBe('1.0.0');
    const shown = await json<RolloutView & { events: { type: string; actor: string | null; reason: string | null }[] }>(await site.call(viewer, 'GET', `/api/v1/rollouts/${east.id}`), 200);
    expect(shown.devices).toMatchObject({ released: 1, replaced: 2, total: 3 });
    expect(shown.events.at(-1)).toMatchObject({ type: 'device-released', actor: expect.stringContaining('release-bot'), reason: expect.stringContaining('east-1') });
    const rows = await json<{ devices: { deviceId: string; released: { at: string; by: string | null } | null }[] }>(await site.call(viewer, 'GET', `/api/v1/rollouts/${east.id}/devices`), 200);
    expect(rows.devices.find((d) => d.deviceId === 'east-1')?.released?.by).toContain('release-bot');
    expect(rows.devices.find((d) => d.deviceId === 'east-2')?.released).toBeNull();
    // No longer managed: set by hand again without force.
    expect((await json<{ releasedFrom: string[] }>(await byHand('east-1', {}), 200)).releasedFrom).toEqual([]);

    // The rollback restores the devices it still manages, and leaves the released one as the operator set it.
    await json(await site.call(operator, 'POST', `/api/v1/rollouts/${east.id}/rollback`), 200);
    await expect.poll(async () => (await json<RolloutView>(await site.call(viewer, 'GET', `/api/v1/rollouts/${east.id}`), 200)).state).toBe('rolled-back');
    expect(desiredVersion('east-2')).toBeNull();
    expect(desiredVersion('east-3')).toBeNull();
    expect(desiredVersion('east-1')).toBe('1.0.0');
    // Rolled back, the rollout holds nobody: no refusal, nothing to release.
    expect((await json<{ releasedFrom: string[] }>(await byHand('east-2', {}), 200)).releasedFrom).toEqual([]);
  });

  it('releases a device set by hand from a finished rollout, so its later rollback leaves the device alone', async () => {
    for (const i of [1, 2]) await site.cp.issueDeviceCredentials(`west-${i}`, { groups: ['west'] });
    const west = await json<RolloutView>(await site.call(operator, 'POST', '/api/v1/rollouts', spec({ target: { groups: ['west'] }, stages: [{ percent: 100, soakSeconds: 3600 }] })), 201);
    await expect.poll(() => site.cp.services.rollouts.store.assignments(west.id).filter((a) => a.status === 'replaced').length).toBe(2);
    expect((await json<RolloutView>(await site.call(operator, 'POST', `/api/v1/rollouts/${west.id}/promote`), 200)).state).toBe('completed');

    // Completed: no refusal, but the device leaves the rollout.
    const res = await json<{ releasedFrom: string[] }>(await site.call(operator, 'PUT', '/api/v1/devices/west-1/desired-model', { model: { name: 'pets', version: '1.0.0' } }), 200);
    expect(res.releasedFrom).toEqual([west.id]);
    await json(await site.call(operator, 'POST', `/api/v1/rollouts/${west.id}/rollback`), 200);
    await expect.poll(async () => (await json<RolloutView>(await site.call(viewer, 'GET', `/api/v1/rollouts/${west.id}`), 200)).state).toBe('rolled-back');
    expect(desiredVersion('west-1')).toBe('1.0.0');
    expect(desiredVersion('west-2')).toBeNull();
  });
});
