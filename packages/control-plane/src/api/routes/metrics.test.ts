import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig } from '../../config/control-plane-config.js';
import { createToken, startApiSite, type ApiSite } from '../../test-support/api-site.js';

type ErrorBody = { error: { code: string; message: string } };

const scrape = (site: ApiSite, token: string | null) => site.call(token, 'GET', '/metrics');

describe('GET /metrics with http.metricsAuth: token (the default)', () => {
  let site: ApiSite;
  let viewer: string;

  beforeAll(async () => {
    site = await startApiSite();
    viewer = (await createToken(site, 'prometheus', 'viewer')).token;
  });
  afterAll(() => site.stop());

  it('is the default', () => {
    expect(loadControlPlaneConfig({ env: {} }).http.metricsAuth).toBe('token');
  });

  it('refuses a scrape without a token, or with an unknown or revoked one, with 401 and no metrics', async () => {
    const none = await scrape(site, null);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const body = await none.text();
    expect((JSON.parse(body) as ErrorBody).error.code).toBe('unauthorized');
    expect(body).not.toContain('perch_cp_');
    expect((await scrape(site, 'perch_not-a-token-we-know')).status).toBe(401);

    const { id, token } = await createToken(site, 'old-scraper', 'viewer');
    expect((await scrape(site, token)).status).toBe(200);
    expect((await site.call(site.cp.adminToken, 'DELETE', `/api/v1/tokens/${id}`)).status).toBe(200);
    expect((await scrape(site, token)).status).toBe(401);
  });

  it('serves the exposition to a viewer token, the least role', async () => {
    const res = await scrape(site, viewer);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toMatch(/^perch_cp_mqtt_clients_connected \d+$/m);
  });
});

describe('GET /metrics with http.metricsAuth: none', () => {
  let site: ApiSite;

  beforeAll(async () => {
    site = await startApiSite({ http: { metricsAuth: 'none' } });
  });
  afterAll(() => site.stop());

  it('serves the exposition without a token, while /api/v1 still needs one', async () => {
    const res = await scrape(site, null);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^perch_cp_mqtt_clients_connected \d+$/m);
    expect((await site.call(null, 'GET', '/api/v1/devices')).status).toBe(401);
  });
});

describe('http.metricsAuth', () => {
  it('takes token or none only, and names the key at fault', () => {
    expect(() => loadControlPlaneConfig({ env: {}, overrides: { http: { metricsAuth: 'basic' as 'none' } } })).toThrow(/http\.metricsAuth/);
  });
});
