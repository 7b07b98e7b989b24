import { CLAIMANT_USERNAME_PREFIX, claimantUsernameOf, deviceIdSchema } from '@perch/shared';
import type { Logger } from 'pino';
import type { MosquittoBrokerAccess } from './mosquitto-broker-access.js';
import type { DynsecClient } from './mosquitto-dynsec.js';

/** What the control plane's database says the broker should let in. */
export interface WantedIdentities {
  /** device ids holding credentials (revoked devices hold none) */
  devices: string[];
  /** SHA-256 (hex) of every claim token that may still claim: not revoked, not expired (a used-up one may still re-answer a lost claim) */
  claimTokens: string[];
  /** claim tokens whose plaintext the control plane has now (the default one), added or brought up to date */
  known: { token: string; name: string }[];
}

export interface ReconcileReport {
  /** clients deleted: devices revoked or forgotten, tokens revoked or expired, while the broker was not told */
  removed: string[];
  /** devices with credentials the broker does not know: the control plane keeps only hashes, so it cannot add them back */
  devicesMissing: string[];
  /** the same for claim tokens, by username */
  claimTokensMissing: string[];
}

const PAGE = 1000;

async function allClients(dynsec: DynsecClient): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const page = await dynsec.listClients({ count: PAGE, offset: out.length });
    out.push(...page.clients);
    if (page.clients.length === 0 || out.length >= page.totalCount) return out;
  }
}

/**
 * Brings a Mosquitto's dynamic security clients in line with the database
 * at start: whatever was revoked, forgotten or expired while a change did
 * not reach the broker (it was down, the control plane crashed between the
 * two) is deleted there. Only deletions are certain: the database keeps
 * hashes, not passwords, so a device or token the broker lacks is reported,
 * not re-created, except for tokens whose plaintext is at hand. Clients
 * that are neither devices nor claim tokens (the control plane's own, an
 * operator's) are left alone.
 */
export async function reconcileMosquitto(dynsec: DynsecClient, access: MosquittoBrokerAccess, want: WantedIdentities, log: Logger): Promise<ReconcileReport> {
  for (const k of want.known) await access.addClaimToken(k.token, { name: k.name });
  const clients = new Set(await allClients(dynsec));
  const devices = new Set(want.devices);
  const tokenUsers = new Set(want.claimTokens.map(claimantUsernameOf));
  const removed: string[] = [];
  for (const username of clients) {
    if (username.startsWith(CLAIMANT_USERNAME_PREFIX)) {
      if (tokenUsers.has(username)) continue;
      await access.removeClaimUsername(username);
      removed.push(username);
    } else if (deviceIdSchema.safeParse(username).success && !devices.has(username)) {
      await access.revokeDevice(username);
      removed.push(username);
    }
  }
  const report: ReconcileReport = {
    removed,
    devicesMissing: want.devices.filter((d) => !clients.has(d)),
    // The known ones were added before the listing.
    claimTokensMissing: [...tokenUsers].filter((u) => !clients.has(u)),
  };
  if (removed.length > 0) log.warn({ removed }, 'removed broker clients the database no longer lets in');
  if (report.devicesMissing.length > 0) {
    log.error(
      { count: report.devicesMissing.length, devices: report.devicesMissing.slice(0, 20) },
      'devices with credentials the broker does not know (a fresh dynamic security file?): they cannot connect until an operator issues new credentials, or forgets theirs so they claim again',
    );
  }
  if (report.claimTokensMissing.length > 0) {
    log.error({ usernames: report.claimTokensMissing.slice(0, 20) }, 'claim tokens the broker does not know: boxes cannot claim with them; create new ones');
  }
  return report;
}
