import { bearer } from './api-auth.js';
import { waitUntil } from './wait-until.js';

/** A gate's value as `GET /rollouts/{id}` shows it. */
export interface GateView {
  gate: string;
  value: number | null;
  threshold: number | null;
  verdict: string;
  phase: string;
  detail?: Record<string, unknown>;
}

export interface RolloutDetail {
  id: string;
  state: string;
  reason: string | null;
  stage: { index: number; of: number };
  phase: string;
  stages: { status: string; devices: number; gates: GateView[]; history: GateView[] }[];
  events: { type: string; state: string; stage: number; at: string; reason: string | null }[];
}

export interface RolloutDeviceRow {
  deviceId: string;
  stage: number;
  status: string;
}

/**
 * The rollout routes as an operator calls them. `api` and `token` are read
 * at each call: a test may restart its control plane on another port.
 */
export function rolloutsApi(api: () => string, token: () => string) {
  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${api()}${path}`, {
      method,
      headers: bearer(token(), body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }
  const detail = (id: string) => call<RolloutDetail>('GET', `/rollouts/${id}`);
  return {
    call,
    detail,
    members: async (id: string) => (await call<{ devices: RolloutDeviceRow[] }>('GET', `/rollouts/${id}/devices`)).devices,
    start: async (spec: Record<string, unknown>) => (await call<{ id: string }>('POST', '/rollouts', spec)).id,
    /** Waits until the rollout is in one of `states`. */
    settle: (id: string, states: string[], timeoutMs = 90_000) =>
      waitUntil(async () => {
        const d = await detail(id);
        return states.includes(d.state) ? d : null;
      }, `rollout ${id} to be ${states.join(' or ')}`, timeoutMs),
  };
}
